-- 002_history_old_primary.sql: a promotion names the primary it replaced
-- (NULL for bootstrap, or when nobody held the lease before), and its
-- reason is one of bootstrap, failover, switchover, demote (issue 19).
ALTER TABLE history ADD COLUMN old_primary text;
