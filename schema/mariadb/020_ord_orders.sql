-- Orders (TLA ord): each order belongs to a user (foreign key); the view joins the two.
-- Also the Users report that needs orders (usr_rewards_report). Idempotent.

CREATE TABLE IF NOT EXISTS ord_orders (
  id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT NOT NULL,
  amount  DECIMAL(12, 2) NOT NULL,
  status  VARCHAR(16) NOT NULL DEFAULT 'new',
  note    VARCHAR(200) NULL,
  placed  DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),
  KEY ord_orders_user (user_id),
  CONSTRAINT ord_orders_user_fk FOREIGN KEY (user_id) REFERENCES usr_users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE OR REPLACE VIEW ord_v_orders AS
  SELECT o.id, o.user_id, u.email AS user_email, u.name AS user_name, o.amount, o.status,
         o.note, o.placed
    FROM ord_orders o JOIN usr_users u ON u.id = o.user_id;

DELIMITER //

CREATE OR REPLACE PROCEDURE ord_create(IN p_user_id BIGINT, IN p_amount DECIMAL(12, 2),
                                       IN p_note VARCHAR(200))
BEGIN
  IF p_amount IS NULL OR p_amount <= 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'amount must be positive';
  END IF;
  INSERT INTO ord_orders (user_id, amount, note) VALUES (p_user_id, p_amount, p_note);
  SELECT * FROM ord_v_orders WHERE id = LAST_INSERT_ID();
END //

CREATE OR REPLACE PROCEDURE ord_update(IN p_id BIGINT, IN p_status VARCHAR(16),
                                       IN p_note VARCHAR(200))
BEGIN
  IF p_status IS NOT NULL AND p_status NOT IN ('new', 'paid', 'shipped', 'cancelled') THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'status must be new, paid, shipped or cancelled';
  END IF;
  UPDATE ord_orders SET status = COALESCE(p_status, status), note = COALESCE(p_note, note)
   WHERE id = p_id;
  IF NOT EXISTS (SELECT 1 FROM ord_orders WHERE id = p_id) THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such order';
  END IF;
  SELECT * FROM ord_v_orders WHERE id = p_id;
END //

CREATE OR REPLACE PROCEDURE ord_delete(IN p_id BIGINT)
BEGIN
  DELETE FROM ord_orders WHERE id = p_id;
  IF ROW_COUNT() = 0 THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such order';
  END IF;
  SELECT p_id AS id;
END //

-- Two result sets: the user, then their orders.
CREATE OR REPLACE PROCEDURE ord_user_summary(IN p_user_id BIGINT)
BEGIN
  IF NOT EXISTS (SELECT 1 FROM usr_users WHERE id = p_user_id) THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such user';
  END IF;
  SELECT id, email, name FROM usr_users WHERE id = p_user_id;
  SELECT id, amount, status, placed FROM ord_orders WHERE user_id = p_user_id ORDER BY id;
END //

-- OUT parameters: how many users placed at least p_min_orders orders totalling p_min_amount,
-- and what those users spent.
CREATE OR REPLACE PROCEDURE usr_rewards_report(IN p_min_orders INT, IN p_min_amount DECIMAL(12, 2),
                                               OUT p_customers INT, OUT p_total DECIMAL(14, 2))
BEGIN
  SELECT COUNT(*), COALESCE(SUM(spent), 0) INTO p_customers, p_total
    FROM (SELECT user_id, SUM(amount) AS spent FROM ord_orders GROUP BY user_id
           HAVING COUNT(*) >= p_min_orders AND SUM(amount) >= p_min_amount) AS qualified;
END //

DELIMITER ;
