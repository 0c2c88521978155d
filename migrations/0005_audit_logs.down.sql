-- Drops every partition too, including those create_audit_log_partition() made later.
DROP TABLE audit_logs;
DROP FUNCTION create_audit_log_partition(date);
