-- Admin API: GET /v1/audit?identity=... pages newest first by id (the cursor), so this index
-- serves the identity filter without sorting.
create index audit_identity_id on audit (identity, id);
