-- TP Capital: raw messages (stored once each), signals derived from them, update events, channel registry.

-- Every message as delivered. The unique key makes at-least-once delivery exactly-once storage; it holds
-- the Telegram date too, because a TimescaleDB hypertable's unique keys must contain its time column.
CREATE TABLE IF NOT EXISTS tp_capital.messages (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    channel_id     text        NOT NULL,
    message_id     bigint      NOT NULL CHECK (message_id > 0),
    kind           text        NOT NULL CHECK (kind IN ('new', 'edit', 'delete')),
    edit_key       bigint      NOT NULL DEFAULT 0,  -- epoch ms of edit_date, 0 without one
    edit_date      timestamptz,
    message_date   timestamptz NOT NULL,
    text           text        NOT NULL DEFAULT '',
    photos         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    source         text        NOT NULL,
    chat_title     text,
    forwarded_from jsonb,
    parsed         jsonb       NOT NULL DEFAULT '{"kind": "noise", "reason": "empty"}'::jsonb,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, message_date),
    CONSTRAINT messages_delivery_key UNIQUE (channel_id, message_id, kind, edit_key, message_date)
);
CREATE INDEX IF NOT EXISTS messages_key_idx ON tp_capital.messages (channel_id, message_id);
CREATE INDEX IF NOT EXISTS messages_date_idx ON tp_capital.messages (message_date DESC);
CREATE INDEX IF NOT EXISTS messages_source_idx ON tp_capital.messages (source, received_at DESC);

-- One row per signal message; edits re-parse it in place (revision grows), deletes are soft.
CREATE TABLE IF NOT EXISTS tp_capital.signals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    text        NOT NULL,
    message_id    bigint      NOT NULL,
    message_date  timestamptz NOT NULL,
    channel_title text,
    signal_type   text        NOT NULL,
    asset         text        NOT NULL,
    buy_min       numeric     NOT NULL,
    buy_max       numeric     NOT NULL,
    targets       numeric[]   NOT NULL DEFAULT '{}',
    target_final  numeric,
    stop          numeric,
    raw_message   text        NOT NULL,
    source        text        NOT NULL,
    revision      integer     NOT NULL DEFAULT 1,
    deleted       boolean     NOT NULL DEFAULT false,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signals_message_key UNIQUE (channel_id, message_id)
);
CREATE INDEX IF NOT EXISTS signals_date_idx ON tp_capital.signals (message_date DESC, id DESC);
CREATE INDEX IF NOT EXISTS signals_asset_idx ON tp_capital.signals (asset, message_date DESC);
CREATE INDEX IF NOT EXISTS signals_channel_idx ON tp_capital.signals (channel_id, message_date DESC);

-- Follow-ups ("ALVO 1 ATINGIDO"), tied to the latest open signal of the asset in the channel when there is one.
CREATE TABLE IF NOT EXISTS tp_capital.signal_events (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    channel_id   text        NOT NULL,
    message_id   bigint      NOT NULL,
    edit_key     bigint      NOT NULL DEFAULT 0,
    message_date timestamptz NOT NULL,
    signal_id    bigint REFERENCES tp_capital.signals (id) ON DELETE SET NULL,
    asset        text        NOT NULL,
    event        text        NOT NULL,
    target       integer,
    gain_pct     numeric,
    raw_message  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, message_date),
    CONSTRAINT signal_events_key UNIQUE (channel_id, message_id, edit_key, message_date)
);
CREATE INDEX IF NOT EXISTS signal_events_signal_idx ON tp_capital.signal_events (signal_id);

-- The registry of monitored channels the gateway reads (env ∪ registry).
CREATE TABLE IF NOT EXISTS tp_capital.telegram_channels (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    label        text NOT NULL,
    channel_id   text NOT NULL,
    channel_type text NOT NULL DEFAULT 'source' CHECK (channel_type IN ('source', 'destination')),
    description  text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telegram_channels_unique UNIQUE (channel_id, channel_type)
);

-- Where TimescaleDB is installed, the append-mostly, time-ordered tables become hypertables with retention
-- left to the operator; on plain PostgreSQL this block does nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('tp_capital.messages', 'message_date', if_not_exists => TRUE,
                                  migrate_data => TRUE, chunk_time_interval => INTERVAL '30 days');
        PERFORM create_hypertable('tp_capital.signal_events', 'message_date', if_not_exists => TRUE,
                                  migrate_data => TRUE, chunk_time_interval => INTERVAL '90 days');
    END IF;
END
$$;
