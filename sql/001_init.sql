-- Broker schema. Applied once by `broker migrate` (store_migrate) inside a transaction;
-- schema_migrations is created by store_migrate itself. No BEGIN/COMMIT here.

-- Trust policy documents, as applied (validated by the broker before they get here).
create table issuers (
    name       text primary key,
    doc        jsonb not null,
    updated_at timestamptz not null default now(),
    version    bigint not null default 1
);

create table identities (
    name       text primary key,
    doc        jsonb not null,
    updated_at timestamptz not null default now(),
    version    bigint not null default 1
);

-- Bumped in the same transaction as every document change; replicas poll it (and LISTEN on
-- broker_policy) to know when to reload.
create table policy_state (
    id         int primary key check (id = 1),
    generation bigint not null
);
insert into policy_state (id, generation) values (1, 0);

-- One row per token-exchange decision, committed before an issued token is returned.
create table audit (
    id          bigserial primary key,
    request_id  text unique not null,
    at          timestamptz not null,
    result      text not null check (result in ('issued', 'denied')),
    reason      text not null,
    identity    text,
    policy      text,
    subject_iss text,
    subject_sub text,
    subject_jti text,
    token_jti   text,
    scope       text,
    audience    text,
    client_addr text,
    explanation jsonb
);
create index audit_at on audit (at);
create index audit_identity_at on audit (identity, at);

-- Admin bearer tokens: only SHA-256 hashes are stored.
create table admin_tokens (
    id         bigserial primary key,
    name       text unique not null,
    hash       bytea unique not null check (length(hash) = 32),
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

-- Admin changes: who changed what, with the document before and after.
create table audit_changes (
    id     bigserial primary key,
    at     timestamptz not null default now(),
    who    text not null,
    what   text not null,           -- "identity/<name>", "issuer/<name>", ...
    change text not null,            -- 'created', 'updated', 'deleted', ...
    before jsonb,
    after  jsonb
);
create index audit_changes_at on audit_changes (at);
