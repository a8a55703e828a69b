-- Test domain (TLA typ): one column of every kind BEDS maps, procedures with OUT parameters,
-- several result sets and each SIGNAL the protocol maps.
CREATE TABLE typ_values (
  id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  small INT NULL,
  big   BIGINT NULL,
  ubig  BIGINT UNSIGNED NULL,
  ratio DOUBLE NULL,
  price DECIMAL(30, 10) NULL,
  flag  TINYINT(1) NULL,
  label VARCHAR(100) NULL,
  day   DATE NULL,
  at    DATETIME(6) NULL,
  stamp TIMESTAMP(3) NULL,
  doc   JSON NULL,
  raw   LONGBLOB NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE VIEW typ_v_values AS SELECT * FROM typ_values;

DELIMITER //
CREATE PROCEDURE typ_create(IN p_small INT, IN p_big BIGINT, IN p_ratio DOUBLE,
                            IN p_price DECIMAL(30, 10), IN p_flag TINYINT(1),
                            IN p_label VARCHAR(100), IN p_day DATE, IN p_at DATETIME(6),
                            IN p_stamp TIMESTAMP(3), IN p_doc JSON, IN p_raw LONGBLOB)
BEGIN
  INSERT INTO typ_values (small, big, ratio, price, flag, label, day, at, stamp, doc, raw)
  VALUES (p_small, p_big, p_ratio, p_price, p_flag, p_label, p_day, p_at, p_stamp, p_doc, p_raw);
  SELECT * FROM typ_v_values WHERE id = LAST_INSERT_ID();
END //

CREATE PROCEDURE typ_echo_out(IN p_in INT, OUT p_doubled INT, OUT p_text VARCHAR(20))
BEGIN
  SET p_doubled = p_in * 2;
  SET p_text = CONCAT('n=', p_in);
END //

CREATE PROCEDURE typ_three_sets()
BEGIN
  SELECT 1 AS a;
  SELECT 'x' AS b, 2 AS c;
  SELECT id FROM typ_values WHERE 1 = 0;
END //

CREATE PROCEDURE typ_signal(IN p_state VARCHAR(5), IN p_msg VARCHAR(100))
BEGIN
  IF p_state = '45000' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = p_msg;
  ELSEIF p_state = '02000' THEN SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = p_msg;
  ELSEIF p_state = '23000' THEN SIGNAL SQLSTATE '23000' SET MESSAGE_TEXT = p_msg;
  END IF;
  SELECT 'no signal' AS result;
END //
DELIMITER ;

-- Busy for far longer than any test's query_timeout_ms.
CREATE PROCEDURE typ_busy()
  SELECT SLEEP(60) AS slept;
