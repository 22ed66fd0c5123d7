-- Deliveries in flight, per endpoint: a claim counts them to keep at most
-- MAX_LEASED_PER_ENDPOINT leased per endpoint. A lease is cleared when its
-- attempt is recorded, so this index holds only the few rows in flight
-- (and leases a crashed process left to lapse).
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_seq, lease_until)
    WHERE lease_until IS NOT NULL;
