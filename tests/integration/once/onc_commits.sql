-- A write procedure that commits on its own: the bind-check must flag it (it would break the
-- exactly-once guarantee). Loaded over onc_items.sql by the test that checks this.
DELIMITER //

CREATE OR REPLACE PROCEDURE onc_create(IN p_name VARCHAR(64), IN p_work_ms INT)
  MODIFIES SQL DATA
BEGIN
  -- a comment naming COMMIT does not count
  INSERT INTO onc_items (name) VALUES (p_name);
  COMMIT;
  SELECT id, name FROM onc_v_items WHERE id = LAST_INSERT_ID();
END //

DELIMITER ;
