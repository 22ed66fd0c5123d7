-- SQLite only: it rebuilds `allocation_terms` clustered by its primary key
-- (WITHOUT ROWID). PostgreSQL's tables are heaps with their key's index,
-- whatever the migration; the number keeps both backends' lists aligned.
SELECT 1;
