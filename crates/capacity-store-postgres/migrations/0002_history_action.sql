-- What kind of change a history entry records: created, updated, closed.
ALTER TABLE allocation_history ADD COLUMN action TEXT NOT NULL DEFAULT 'updated';
