-- The exactly-once test domain (TLA onc): a create that works on after its INSERT, so that a
-- node killed mid-request leaves a real window between the effect and the reply.
CREATE TABLE IF NOT EXISTS onc_items (
  id    INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name  VARCHAR(64) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE OR REPLACE VIEW onc_v_items AS SELECT id, name FROM onc_items;

DELIMITER //

CREATE OR REPLACE PROCEDURE onc_create(IN p_name VARCHAR(64), IN p_work_ms INT)
  MODIFIES SQL DATA
BEGIN
  IF p_work_ms < 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'work_ms must not be negative';
  END IF;
  INSERT INTO onc_items (name) VALUES (p_name);
  SELECT * FROM onc_v_items WHERE id = LAST_INSERT_ID() INTO @id, @name;
  IF p_work_ms > 0 THEN
    DO SLEEP(p_work_ms / 1000);
  END IF;
  SELECT @id AS id, @name AS name;
END //

DELIMITER ;
