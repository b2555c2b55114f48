-- Small groups are planned like single deliveries.
--
-- The API now stores concurrent single deliveries together (group commit, decision 13), so most calls carry a
-- few messages, not one. Planning afresh costs about 1.5 ms whatever the size (migration 0005), which for a group
-- of a few messages is most of the statement's cost, while an index plan cached per connection serves a few
-- keys as well as one. So groups of up to 64 messages use the cached plans with sequential scans off; larger
-- batches are still planned for their rows. Only the threshold changes.

CREATE OR REPLACE FUNCTION tp_capital.ingest_batch(
    p_channel_id text[], p_message_id bigint[], p_message_date timestamptz[], p_text text[], p_kind text[],
    p_edit_date timestamptz[], p_photos jsonb[], p_source text[], p_chat_title text[], p_forwarded_from jsonb[],
    p_parsed jsonb[], p_reply_to bigint[])
RETURNS TABLE (ord bigint, stored boolean, signal_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_stored_ord bigint[];
    v_stored_id  bigint[];
BEGIN
    -- How this transaction plans the statements below depends on the batch size (migrations 0005 and 0010).
    IF cardinality(p_channel_id) <= 64 THEN
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
        PERFORM set_config('enable_seqscan', 'off', true);
    ELSE
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    END IF;
    -- Per-message locks, always taken in key order: concurrent batches and single deliveries of the same
    -- message serialise, and never deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(k.channel_id || ':' || k.message_id::text, 7240))
       FROM (SELECT DISTINCT c AS channel_id, m AS message_id FROM unnest(p_channel_id, p_message_id) AS u(c, m)
             ORDER BY 1, 2) AS k;

    WITH input AS (
        SELECT u.*, CASE WHEN u.edit_date IS NULL THEN 0
                         ELSE (extract(epoch FROM u.edit_date) * 1000)::bigint END AS edit_key
          FROM unnest(p_channel_id, p_message_id, p_message_date, p_text, p_kind, p_edit_date, p_photos, p_source,
                      p_chat_title, p_forwarded_from, p_parsed,
                      coalesce(p_reply_to, array_fill(NULL::bigint, ARRAY[cardinality(p_channel_id)])))
               WITH ORDINALITY
               AS u(channel_id, message_id, message_date, text, kind, edit_date, photos, source, chat_title,
                    forwarded_from, parsed, reply_to_message_id, ord)
    ),
    first_of_key AS (
        SELECT DISTINCT ON (channel_id, message_id, kind, edit_key, message_date) *
          FROM input ORDER BY channel_id, message_id, kind, edit_key, message_date, ord
    ),
    inserted AS (
        INSERT INTO tp_capital.messages (channel_id, message_id, kind, edit_key, edit_date, message_date, text,
                                         photos, source, chat_title, forwarded_from, parsed, reply_to_message_id)
        SELECT channel_id, message_id, kind, edit_key, edit_date, message_date, text, coalesce(photos, '[]'),
               source, chat_title, forwarded_from, parsed, reply_to_message_id
          FROM first_of_key ORDER BY ord
        ON CONFLICT ON CONSTRAINT messages_delivery_key DO NOTHING
        RETURNING id, channel_id, message_id, kind, edit_key, message_date
    )
    SELECT array_agg(f.ord), array_agg(i.id)
      INTO v_stored_ord, v_stored_id
      FROM inserted i
      JOIN first_of_key f USING (channel_id, message_id, kind, edit_key, message_date);

    IF v_stored_id IS NOT NULL THEN
        PERFORM tp_capital.apply_messages(
            ARRAY(SELECT p_channel_id[o] FROM unnest(v_stored_ord) AS o),
            ARRAY(SELECT p_message_id[o] FROM unnest(v_stored_ord) AS o));
    END IF;

    RETURN QUERY
    SELECT u.ord, u.ord = ANY (coalesce(v_stored_ord, '{}')),
           (SELECT s.id FROM tp_capital.signals s WHERE s.channel_id = u.c AND s.message_id = u.m)
      FROM unnest(p_channel_id, p_message_id) WITH ORDINALITY AS u(c, m, ord)
     ORDER BY u.ord;
END
$$;
