-- Exactly-once writes (docs/protocol.md "Exactly once"; docs/templates.md "Writes apply exactly
-- once"). Install it in every database that REL write templates use, like any other object:
-- with [idempotency] enabled (the default) a write template on a database without these objects
-- is unavailable, and a production node does not start.
--
-- BEDS runs each write in a transaction:
--                           CALL {the template's procedure}(…)
--                           CALL beds_once_commit(identity, digest, reply, ttl_s)
-- or, for several writes a worker took together, their procedures one after another and then
-- CALL beds_once_commit_many(records) for all of them,
-- so the write's effect and its record commit together or not at all. A repeat of the write (a
-- redelivery, or a client re-sending with the same idempotency_key) cannot record itself again
-- (the primary key): it is rolled back and answered from the record. A message the broker
-- redelivers is looked up first (beds_once_begin), so its procedure is not called at all. The
-- template's procedures must therefore not COMMIT or ROLLBACK themselves (the bind-check flags
-- one that does).
-- Idempotent: safe to load again over an existing database.

CREATE TABLE IF NOT EXISTS beds_idempotency (
  identity   BINARY(32)  NOT NULL PRIMARY KEY,  -- SHA-256 of the key (scoped) or message id
  digest     BINARY(32)  NOT NULL,              -- SHA-256 of the request: a reused key differs
  reply      LONGTEXT    NOT NULL,              -- {"data": …, "count": n}, as first answered
  created_at DATETIME(3) NOT NULL DEFAULT UTC_TIMESTAMP(3),
  expires_at DATETIME(3) NOT NULL,
  KEY beds_idempotency_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

DELIMITER //

-- Answers the record of an earlier apply (no row: none), in a transaction BEDS then ends.
CREATE OR REPLACE PROCEDURE beds_once_begin(IN p_identity BINARY(32))
  MODIFIES SQL DATA
BEGIN
  START TRANSACTION;
  SELECT LOWER(HEX(digest)) AS digest, reply FROM beds_idempotency WHERE identity = p_identity;
END //

-- Records the write and commits it with its effect, then opens the next write's transaction
-- (it holds nothing until that write's first statement). A recorded identity fails with
-- ER_DUP_ENTRY; BEDS then rolls back.
CREATE OR REPLACE PROCEDURE beds_once_commit(IN p_identity BINARY(32), IN p_digest BINARY(32),
                                             IN p_reply LONGTEXT, IN p_ttl_s INT)
  MODIFIES SQL DATA
BEGIN
  INSERT INTO beds_idempotency (identity, digest, reply, expires_at)
    VALUES (p_identity, p_digest, p_reply, UTC_TIMESTAMP(3) + INTERVAL p_ttl_s SECOND);
  COMMIT;
  START TRANSACTION;
END //

-- beds_once_commit for several writes that ran in one transaction (a worker's cycle): p_records
-- is a JSON array of [identity hex, digest hex, reply, ttl_s], one per write. Any identity
-- recorded already fails the whole insert with ER_DUP_ENTRY; BEDS then rolls back and runs each
-- write alone.
CREATE OR REPLACE PROCEDURE beds_once_commit_many(IN p_records LONGTEXT)
  MODIFIES SQL DATA
BEGIN
  INSERT INTO beds_idempotency (identity, digest, reply, expires_at)
    SELECT UNHEX(r.identity), UNHEX(r.digest), r.reply,
           UTC_TIMESTAMP(3) + INTERVAL r.ttl_s SECOND
    FROM JSON_TABLE(p_records, '$[*]' COLUMNS (
           identity CHAR(64) CHARACTER SET ascii PATH '$[0]',
           digest   CHAR(64) CHARACTER SET ascii PATH '$[1]',
           reply    LONGTEXT CHARACTER SET utf8mb4 PATH '$[2]',
           ttl_s    INT PATH '$[3]')) AS r;
  COMMIT;
  START TRANSACTION;
END //

-- Deletes up to p_limit expired records, oldest first, and answers how many went.
CREATE OR REPLACE PROCEDURE beds_once_sweep(IN p_limit INT)
  MODIFIES SQL DATA
BEGIN
  DELETE FROM beds_idempotency WHERE expires_at < UTC_TIMESTAMP(3)
    ORDER BY expires_at LIMIT p_limit;
  SELECT ROW_COUNT() AS swept;
END //

DELIMITER ;
