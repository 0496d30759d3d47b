-- The catalogue schema of SCHEMA_VERSION 2 (int8 sequences, the vectors' generation counters), as it was written.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    path TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'analyzed', 'failed')),
    error TEXT
);
CREATE INDEX IF NOT EXISTS tracks_by_hash ON tracks (content_hash);
CREATE TABLE IF NOT EXISTS analyses (
    content_hash TEXT PRIMARY KEY,
    analysis_version TEXT NOT NULL,
    duration_s REAL NOT NULL,
    excerpt_start_s REAL NOT NULL,
    excerpt_s REAL NOT NULL,
    analyzed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    content_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (content_hash, name)
);
CREATE TABLE IF NOT EXISTS sequences (
    content_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    n_channels INTEGER NOT NULL,
    sequence BLOB NOT NULL,
    encoding TEXT NOT NULL DEFAULT 'float16',
    PRIMARY KEY (content_hash, name)
);
CREATE TRIGGER IF NOT EXISTS vectors_generation_insert AFTER INSERT ON vectors BEGIN
    INSERT INTO meta (key, value) VALUES ('generation:' || NEW.name, '1')
    ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;
CREATE TRIGGER IF NOT EXISTS vectors_generation_delete AFTER DELETE ON vectors BEGIN
    INSERT INTO meta (key, value) VALUES ('generation:' || OLD.name, '1')
    ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;
CREATE TRIGGER IF NOT EXISTS vectors_generation_update AFTER UPDATE ON vectors BEGIN
    INSERT INTO meta (key, value) VALUES ('generation:' || NEW.name, '1')
    ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;
