-- Plan the ingest functions' statements for the values at hand on every call. A cached generic plan made
-- while the tables were empty would otherwise stay with a pooled connection for its whole life.
ALTER FUNCTION tp_capital.ingest_batch(text[], bigint[], timestamptz[], text[], text[], timestamptz[], jsonb[],
                                       text[], text[], jsonb[], jsonb[]) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION tp_capital.refresh_signals(text[], bigint[]) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION tp_capital.record_events(bigint[]) SET plan_cache_mode = force_custom_plan;

-- "The latest open signal of this asset in this channel" stops at the first matching index entry.
CREATE INDEX IF NOT EXISTS signals_channel_asset_idx
    ON tp_capital.signals (channel_id, asset, message_date DESC, id DESC);
