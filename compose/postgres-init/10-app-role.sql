-- Run once by the postgres image (/docker-entrypoint-initdb.d), on an empty volume only, as the
-- container's superuser (POSTGRES_USER) in the database POSTGRES_DB.
--
-- The product connects as `scheduler`: it owns its database, so migrations can create and alter
-- its tables, and it has no right beyond that: not a superuser (which could read files, run
-- programs and end other sessions), and it can create no database or role and cannot replicate
-- or bypass row security. The superuser stays the container's, for maintenance by hand.
\set ON_ERROR_STOP on
-- The password comes from the container's environment (compose sets it from .env), quoted by
-- psql as a literal, so it never has to be written here.
\getenv app_password POSTGRES_APP_PASSWORD
\if :{?app_password}
\else
    -- Fails the container's first start (ON_ERROR_STOP) rather than leave the product no role.
    DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_APP_PASSWORD is not set'; END $$;
\endif

CREATE ROLE scheduler LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER DATABASE scheduler OWNER TO scheduler;
-- Since PostgreSQL 15 `public` belongs to pg_database_owner, so the new owner may create in it;
-- said outright so the role's rights do not hang on that default.
ALTER SCHEMA public OWNER TO scheduler;
