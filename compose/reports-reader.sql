-- The role reports read the product's database through (REPORT_SOURCE_DEFAULT_URL): made if it
-- is missing, then brought up to date. Run with psql as a superuser in the product's database,
-- after the migrations, and again after each (compose: the `reports-reader` service, after
-- `prepare`), so that a new table gets its grant:
--
--     POSTGRES_REPORTS_PASSWORD=... psql -X -v ON_ERROR_STOP=1 -d scheduler -f compose/reports-reader.sql
--
-- It may read every table of the product but nothing that holds the site's secrets (the same
-- list as SECRET_COLUMNS in reports/source_rights.py, which each report's run checks against
-- the role's grants): not a superuser, no replication, no predefined role, SELECT grants only,
-- and read-only with a statement timeout even where a client forgets to ask.
\set ON_ERROR_STOP on
\if :{?reader}
\else
    \set reader reports_reader
\endif
\getenv reader_password POSTGRES_REPORTS_PASSWORD
\if :{?reader_password}
\else
    DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_REPORTS_PASSWORD is not set'; END $$;
\endif

SELECT format('CREATE ROLE %I LOGIN', :'reader') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader')
\gexec
ALTER ROLE :"reader" LOGIN PASSWORD :'reader_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '10min';

GRANT CONNECT ON DATABASE :"DBNAME" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";

-- Secrets: the sessions table (session keys) not at all; of the others every column but the
-- secret one (password hashes, webhook URLs, whose path is their key).
SELECT format('REVOKE ALL ON %I FROM %I', secret.tab, :'reader')
FROM (VALUES ('django_session'), ('auth_user'), ('monitoring_alertsettings'), ('monitoring_alertdelivery'))
    AS secret(tab)
WHERE to_regclass(quote_ident(secret.tab)) IS NOT NULL
\gexec
SELECT format('GRANT SELECT (%s) ON %I TO %I', string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
              secret.tab, :'reader')
FROM (VALUES ('auth_user', 'password'), ('monitoring_alertsettings', 'webhook_url'),
             ('monitoring_alertdelivery', 'recipient')) AS secret(tab, col)
JOIN pg_attribute AS a ON a.attrelid = to_regclass(quote_ident(secret.tab))
    AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> secret.col
GROUP BY secret.tab
\gexec
