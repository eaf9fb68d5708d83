-- The request role: owns nothing, is never superuser, never bypasses RLS.
-- Roles are cluster-wide, so several minicrm databases on one cluster share it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'minicrm_api') THEN
    CREATE ROLE minicrm_api NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS;
  END IF;
END
$$;

-- The migrating (owner) login switches to the request role inside each request
-- transaction (app.act_as), which needs membership unless it is a superuser.
-- Granted explicitly even when CREATEROLE already made it a member: from
-- PostgreSQL 16 on, the creator's implicit membership lacks the SET option.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT minicrm_api TO %I', current_user);
  END IF;
END
$$;

-- crm: tables; app: request context; api: the callable surface;
-- private: SECURITY DEFINER helpers and secrets (refresh tokens).
CREATE SCHEMA crm;
CREATE SCHEMA app;
CREATE SCHEMA api;
CREATE SCHEMA private;

-- Nothing new is executable by PUBLIC; grants are explicit.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA crm, app, api, private REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

GRANT USAGE ON SCHEMA crm, app, api TO minicrm_api;

CREATE TYPE crm.member_role AS ENUM ('owner', 'admin', 'manager', 'member');
CREATE TYPE crm.deal_status AS ENUM ('new', 'in_progress', 'won', 'lost');
CREATE TYPE crm.deal_stage AS ENUM ('qualification', 'proposal', 'negotiation', 'closed');
CREATE TYPE crm.activity_type AS ENUM ('comment', 'status_changed', 'stage_changed', 'task_created', 'system');
