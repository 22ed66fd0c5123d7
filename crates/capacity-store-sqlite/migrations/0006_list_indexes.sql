-- Lists filter by one column and page in creation order: an index on
-- (filter, seq) answers both, instead of walking the primary key.
CREATE INDEX pools_workspace ON pools (workspace_id, seq);
CREATE INDEX allocations_service_line_seq ON allocations (service_line_id, seq);
CREATE INDEX events_organization_type ON events (organization_id, type, seq);
-- Without statistics the planner preferred this one over the far more
-- selective workspace index when both filters were given; the weekly
-- evaluation that wanted it reads every allocation anyway.
DROP INDEX allocations_status;
