-- Books (TLA bks): the domain the "nothing silent" tests make mistakes with. A latin1 column,
-- a DECIMAL(10,2) price, a JSON column, and procedures declaring their SQL data access.

CREATE TABLE IF NOT EXISTS bks_books (
  id    BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  isbn  VARCHAR(20) NOT NULL,
  title VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NULL,
  shelf VARCHAR(20) CHARACTER SET latin1 NULL,
  meta  JSON NULL,
  UNIQUE KEY bks_books_isbn (isbn)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE OR REPLACE VIEW bks_v_books AS SELECT id, isbn, title, price, shelf, meta FROM bks_books;

DELIMITER //

CREATE OR REPLACE PROCEDURE bks_create(IN p_isbn VARCHAR(20), IN p_title VARCHAR(200),
                                       IN p_price DECIMAL(10,2), IN p_shelf VARCHAR(20))
MODIFIES SQL DATA
BEGIN
  INSERT INTO bks_books (isbn, title, price, shelf) VALUES (p_isbn, p_title, p_price, p_shelf);
  SELECT * FROM bks_v_books WHERE id = LAST_INSERT_ID();
END //

CREATE OR REPLACE PROCEDURE bks_delete(IN p_id BIGINT)
MODIFIES SQL DATA
BEGIN
  DELETE FROM bks_books WHERE id = p_id;
  IF ROW_COUNT() = 0 THEN
    SIGNAL SQLSTATE '02000' SET MESSAGE_TEXT = 'no such book';
  END IF;
  SELECT p_id AS id;
END //

CREATE OR REPLACE PROCEDURE bks_cheaper_than(IN p_price DECIMAL(10,2))
READS SQL DATA
BEGIN
  SELECT * FROM bks_v_books WHERE price < p_price ORDER BY price;
END //

CREATE OR REPLACE PROCEDURE bks_touch(IN p_id BIGINT)
MODIFIES SQL DATA
BEGIN
  UPDATE bks_books SET title = title WHERE id = p_id;
  SELECT p_id AS id;
END //

DELIMITER ;
