-- The team's own tables, staged by workflows that run elsewhere (as on Treasure Data, where
-- `time` is a Unix epoch in seconds). Load them into the example's warehouse with
--   duckdb ../../../.cdp/td_existing_tables.duckdb < seed.sql
CREATE SCHEMA acme_crm;
CREATE TABLE acme_crm.site_aaa (td_client_id VARCHAR, td_global_id VARCHAR, email VARCHAR, name VARCHAR, time BIGINT);
INSERT INTO acme_crm.site_aaa VALUES
  ('c1', 'g1', 'a@x.com', 'Ann', 1700000000),
  ('c2', 'g1', '', 'Ann2', 1700000100),
  ('c3', 'g2', 'a@x.com', 'Anna', 1700000200),
  ('c4', 'g3', NULL, 'Bob', 1700000300);
-- Here `time` is the same epoch stored as text, as some TD imports leave it.
CREATE TABLE acme_crm.contacts (email VARCHAR, name VARCHAR, time VARCHAR);
INSERT INTO acme_crm.contacts VALUES
  ('a@x.com', 'Ann Contact', '1700000050'),
  ('b@x.com', '', '1700000400');
