-- Users (TLA usr): the DBA's table, view and procedures for templates/usr_users_rel.toml.
-- BEDS only ever CALLs the procedures and SELECTs from the view, with bound values.
-- Idempotent: safe to load again over an existing database.

CREATE TABLE IF NOT EXISTS usr_users (
  id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email   VARCHAR(128) NOT NULL,
  name    VARCHAR(64) NULL,
  profile JSON NULL,
  created DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),
  UNIQUE KEY usr_users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE OR REPLACE VIEW usr_v_users AS
  SELECT id, email, name, profile, created FROM usr_users;

DELIMITER //

CREATE OR REPLACE PROCEDURE usr_create(IN p_email VARCHAR(128), IN p_name VARCHAR(64),
                                       IN p_profile JSON)
BEGIN
  IF p_email NOT LIKE '%_@_%' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'email must look like name@domain';
  END IF;
  INSERT INTO usr_users (email, name, profile) VALUES (p_email, p_name, p_profile);
  SELECT * FROM usr_v_users WHERE id = LAST_INSERT_ID();
END //

-- NULL leaves a column as it is.
CREATE OR REPLACE PROCEDURE usr_update(IN p_id BIGINT, IN p_email VARCHAR(128),
                                       IN p_name VARCHAR(64), IN p_profile JSON)
BEGIN
  IF NOT EXISTS (SELECT 1 FROM usr_users WHERE id = p_id) THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such user';
  END IF;
  UPDATE usr_users
     SET email = COALESCE(p_email, email), name = COALESCE(p_name, name),
         profile = COALESCE(p_profile, profile)
   WHERE id = p_id;
  SELECT * FROM usr_v_users WHERE id = p_id;
END //

CREATE OR REPLACE PROCEDURE usr_delete(IN p_id BIGINT)
BEGIN
  DELETE FROM usr_users WHERE id = p_id;
  IF ROW_COUNT() = 0 THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such user';
  END IF;
  SELECT p_id AS id;
END //

-- A point read through a procedure: the benchmark's REL mode.
CREATE OR REPLACE PROCEDURE usr_get(IN p_id BIGINT)
BEGIN
  SELECT * FROM usr_v_users WHERE id = p_id;
END //

DELIMITER ;
