-- Customers homed in ap-southeast (account ids 3000-3999). Synthetic people.
INSERT INTO accounts VALUES
    (3001, 'ap-southeast', 'Wei Ling Tan', 'weiling.tan@example.sg', 'SG50DBSS0012345678', 5100.00, 'SGD', DATE '2020-04-04'),
    (3002, 'ap-southeast', 'Arjun Nair', 'arjun.nair@example.sg', 'SG21OCBC0098765432', 240.75, 'SGD', DATE '2021-08-19'),
    (3003, 'ap-southeast', 'Siti Rahman', 'siti.rahman@example.sg', NULL, 15.00, 'SGD', DATE '2023-01-05'),
    (3004, 'ap-southeast', 'Kenji Sato', 'kenji.sato@example.sg', 'SG88UOBB0011223344', 870.00, 'SGD', DATE '2019-10-10');
INSERT INTO transfers VALUES
    (1, 'ap-southeast', 3001, 3002, 60.00, 'SGD', 'committed', TIMESTAMP '2024-05-01 18:45:00');
