-- Customers homed in eu-central (account ids 2000-2999). Synthetic people.
INSERT INTO accounts VALUES
    (2001, 'eu-central', 'Ana Lopez', 'ana.lopez@example.eu', 'DE89370400440532013000', 1200.50, 'EUR', DATE '2020-01-20'),
    (2002, 'eu-central', 'Jan Novak', 'jan.novak@example.eu', 'DE44500105175407324931', 75.00, 'EUR', DATE '2021-06-11'),
    (2003, 'eu-central', 'Lea Schmidt', 'lea.schmidt@example.eu', 'DE02120300000000202051', 3300.00, 'EUR', DATE '2018-09-02'),
    (2004, 'eu-central', 'Luca Rossi', 'luca.rossi@example.eu', 'DE75512108001245126199', 980.40, 'EUR', DATE '2022-12-24');
INSERT INTO transfers VALUES
    (1, 'eu-central', 2001, 2002, 25.00, 'EUR', 'committed', TIMESTAMP '2024-05-01 09:00:00'),
    (2, 'eu-central', 2003, 2004, 300.00, 'EUR', 'committed', TIMESTAMP '2024-05-03 14:30:00');
