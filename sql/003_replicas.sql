-- Live replicas, so each one enforces its fair share of per-identity rate limits without a
-- database round trip per request. Each replica upserts its row about once a second.
CREATE TABLE replicas (
    id   text PRIMARY KEY,
    seen timestamptz NOT NULL DEFAULT now()
);
