-- RealTube push: base schema.
-- Plain SQL, no psql meta-commands, so the file also works as a docker-entrypoint-initdb.d
-- script. Each migration records itself in schema_migrations, whichever way it was applied.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    user_id          text PRIMARY KEY,
    trust_score      double precision NOT NULL,
    total_votes      integer NOT NULL DEFAULT 0 CHECK (total_votes >= 0),
    accuracy_rate    double precision NOT NULL DEFAULT 0.5,
    is_vip           boolean NOT NULL DEFAULT false,
    is_shadowbanned  boolean NOT NULL DEFAULT false,
    first_seen       timestamptz NOT NULL DEFAULT now(),
    last_active      timestamptz NOT NULL DEFAULT now(),
    trust_updated_at timestamptz
);
CREATE INDEX users_last_active_idx ON users (last_active);

CREATE TABLE channels (
    channel_id     text PRIMARY KEY,
    channel_hash   text COLLATE "C" NOT NULL,
    score          double precision NOT NULL DEFAULT 0,
    total_videos   integer NOT NULL DEFAULT 0,
    flagged_videos integer NOT NULL DEFAULT 0,
    top_categories text[] NOT NULL DEFAULT '{}',
    locked         boolean NOT NULL DEFAULT false,
    auto_flag_new  boolean NOT NULL DEFAULT false,
    last_updated   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE videos (
    video_id      text PRIMARY KEY,
    -- SHA-256 hex of video_id; "C" collation makes a prefix a plain btree range.
    video_hash    text COLLATE "C" NOT NULL,
    channel_id    text,
    score         double precision NOT NULL DEFAULT 0,
    total_votes   integer NOT NULL DEFAULT 0 CHECK (total_votes >= 0),
    locked        boolean NOT NULL DEFAULT false,
    hidden        boolean NOT NULL DEFAULT false,
    shadow_hidden boolean NOT NULL DEFAULT false,
    -- set when the video first appeared on an auto-flag channel: the channel's prior holds
    -- until the video's own votes reach full confidence.
    preliminary   boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_updated  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX videos_hash_idx ON videos (video_hash);
CREATE INDEX videos_channel_idx ON videos (channel_id) WHERE channel_id IS NOT NULL;
CREATE INDEX videos_score_idx ON videos (score DESC) WHERE score > 0;

CREATE TABLE video_categories (
    video_id       text NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
    category       text NOT NULL,
    votes          integer NOT NULL DEFAULT 0 CHECK (votes >= 0),
    weighted_score double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (video_id, category)
);

CREATE TABLE votes (
    id         bigserial PRIMARY KEY,
    video_id   text NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
    user_id    text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    category   text NOT NULL,
    -- effective weight (trust x base) snapshotted when the vote was cast
    weight     double precision NOT NULL,
    vip        boolean NOT NULL DEFAULT false,
    cast_at    timestamptz NOT NULL,
    ip_hash    text,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (video_id, user_id)
);
CREATE INDEX votes_user_idx ON votes (user_id, cast_at);

CREATE TABLE vip_actions (
    id          bigserial PRIMARY KEY,
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vip_actions_created_idx ON vip_actions (created_at DESC);

CREATE TABLE ip_hashes (
    ip_hash    text NOT NULL,
    user_id    text NOT NULL,
    votes      integer NOT NULL DEFAULT 1,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ip_hash, user_id)
);

-- Durable work queues: a row is claimed with FOR UPDATE SKIP LOCKED and deleted in the
-- transaction that does the work, so a crash returns it and two workers never share it.
CREATE TABLE score_queue (
    video_id    text PRIMARY KEY,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE channel_queue (
    channel_id  text PRIMARY KEY,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);

-- One row. last_seq is bumped by every sync-log append; the row lock it takes is held to
-- commit, which is what makes seq gap-free and commit-ordered.
CREATE TABLE sync_meta (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch          text NOT NULL,
    last_seq       bigint NOT NULL DEFAULT 0,
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO sync_meta (epoch) VALUES (replace(gen_random_uuid()::text, '-', ''));

CREATE TABLE sync_cache (
    seq         bigint PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('video', 'channel')),
    entity_id   text NOT NULL,
    entity_hash text COLLATE "C" NOT NULL,
    action      text NOT NULL CHECK (action IN ('update', 'remove')),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_cache_created_idx ON sync_cache (created_at);

CREATE TABLE full_cache_blob (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generated_at timestamptz NOT NULL,
    epoch        text NOT NULL,
    cursor       bigint NOT NULL,
    etag         text NOT NULL,
    json_gzip    bytea NOT NULL,
    msgpack_gzip bytea NOT NULL
);

-- Exact counters: maintained per row from OLD/NEW, so concurrent voters never lose an
-- increment. The video row is locked first, then its category rows, the same order the score
-- worker uses, so the two never deadlock.
CREATE FUNCTION votes_count_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE videos SET total_votes = total_votes + 1 WHERE video_id = NEW.video_id;
        INSERT INTO video_categories (video_id, category, votes) VALUES (NEW.video_id, NEW.category, 1)
        ON CONFLICT (video_id, category) DO UPDATE SET votes = video_categories.votes + 1;
        UPDATE users SET total_votes = total_votes + 1 WHERE user_id = NEW.user_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE videos SET total_votes = total_votes - 1 WHERE video_id = OLD.video_id;
        UPDATE video_categories SET votes = votes - 1
         WHERE video_id = OLD.video_id AND category = OLD.category;
        UPDATE users SET total_votes = total_votes - 1 WHERE user_id = OLD.user_id;
    ELSIF NEW.category IS DISTINCT FROM OLD.category THEN
        PERFORM 1 FROM videos WHERE video_id = NEW.video_id FOR UPDATE;
        UPDATE video_categories SET votes = votes - 1
         WHERE video_id = OLD.video_id AND category = OLD.category;
        INSERT INTO video_categories (video_id, category, votes) VALUES (NEW.video_id, NEW.category, 1)
        ON CONFLICT (video_id, category) DO UPDATE SET votes = video_categories.votes + 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER votes_count AFTER INSERT OR UPDATE OR DELETE ON votes
    FOR EACH ROW EXECUTE FUNCTION votes_count_trigger();

-- A wake-up only: the queue row is the durable record, NOTIFY just saves a poll interval.
CREATE FUNCTION score_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rt_score_queue', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER score_queue_wakeup AFTER INSERT ON score_queue
    FOR EACH STATEMENT EXECUTE FUNCTION score_queue_notify();

INSERT INTO schema_migrations (version) VALUES ('001_schema');
