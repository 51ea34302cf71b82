-- Replay protection for trust policies with "single_use": each subject token jti is accepted once
-- per issuer across all replicas. Rows are written in the same transaction as the decision's audit
-- row and pruned once the token has expired.
CREATE TABLE used_jti (
    issuer     text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_jti_expires_at ON used_jti (expires_at);
