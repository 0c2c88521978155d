DROP FUNCTION set_updated_at();

DROP TYPE audit_severity;
DROP TYPE delivery_method;
DROP TYPE webhook_status;
DROP TYPE integration_status;
DROP TYPE job_status;
DROP TYPE permission_type;
DROP TYPE visibility;
DROP TYPE media_status;
DROP TYPE user_role;
