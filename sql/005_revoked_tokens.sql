-- Revoked Broker-minted tokens (POST /v1/revoke), by jti. Every replica copies the table into
-- memory at start, then incrementally by seq every second and on NOTIFY broker_revoke. Rows are
-- pruned by the replica heartbeat once the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    exp        timestamptz NOT NULL,            -- the token's exp (by jti: now + the longest max_ttl + leeway)
    revoked_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text NOT NULL,                   -- 'bearer' or the admin credential's name
    seq        bigint GENERATED ALWAYS AS IDENTITY UNIQUE
);
-- seq: the incremental sync (seq > last seen); revoked_at: its re-read of the last seconds (a row
-- whose seq was taken before another one's but committed after it); exp: the prune.
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
CREATE INDEX revoked_tokens_exp ON revoked_tokens (exp);
