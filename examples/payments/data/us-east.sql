-- Customers homed in us-east (account ids 1000-1999). Synthetic people.
INSERT INTO accounts VALUES
    (1001, 'us-east', 'Avery Johnson', 'avery.johnson@example.com', 'US64SVBKUS6S3300958879', 2500.00, 'USD', DATE '2021-03-14'),
    (1002, 'us-east', 'Jordan Smith', 'jordan.smith@example.com', 'US12CHASUS33100200300', 180.25, 'USD', DATE '2022-07-01'),
    (1003, 'us-east', 'Taylor Brown', 'taylor.b@example.com', NULL, 9400.10, 'USD', DATE '2019-11-30'),
    (1004, 'us-east', 'Morgan Davis', 'morgan.davis@example.com', 'US09BOFAUS3N400500600', 61.00, 'USD', DATE '2023-02-08'),
    -- A euro account of a US customer: the demo's cross-border transfer debits it.
    (1005, 'us-east', 'Riley Chen', 'riley.chen@example.com', 'US31CITIUS33500600700', 500.00, 'EUR', DATE '2024-01-09');
INSERT INTO transfers VALUES
    (1, 'us-east', 1001, 1002, 40.00, 'USD', 'committed', TIMESTAMP '2024-05-01 10:15:00'),
    (2, 'us-east', 1003, 1004, 12.50, 'USD', 'committed', TIMESTAMP '2024-05-02 08:00:00');
