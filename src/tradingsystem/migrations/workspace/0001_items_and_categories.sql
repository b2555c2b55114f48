-- Workspace backlog: categories and items. Plain PostgreSQL; items are edited in place, so no hypertable.
CREATE TABLE IF NOT EXISTS workspace.categories (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9-]+$' AND length(name) <= 50),
    display_name  text NOT NULL,
    description   text NOT NULL DEFAULT '',
    color         text NOT NULL DEFAULT '#6B7280',
    display_order integer NOT NULL DEFAULT 0,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS workspace.items (
    id          text PRIMARY KEY,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    -- RESTRICT: a category in use cannot be deleted (answered as 409).
    category    text NOT NULL REFERENCES workspace.categories (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    priority    text NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    status      text NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'review', 'in-progress', 'completed', 'rejected')),
    tags        text[] NOT NULL DEFAULT '{}',
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS items_created_idx ON workspace.items (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS items_category_idx ON workspace.items (category);
CREATE INDEX IF NOT EXISTS items_status_idx ON workspace.items (status);
CREATE INDEX IF NOT EXISTS items_tags_idx ON workspace.items USING gin (tags);
