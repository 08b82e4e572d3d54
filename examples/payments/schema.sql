-- The payment processor of ../../../shared/seed/scenario.txt: customers and their
-- accounts live in their home region; transfers are recorded where the debited account
-- lives; currencies are reference data every region holds.
-- Run on every node (each node keeps its own catalog).

CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    iban TEXT,
    balance DECIMAL(18,2) NOT NULL,
    currency TEXT NOT NULL,
    opened DATE
) WITH (locality = 'regional by row', region_column = 'region',
        pii = 'name, email, iban', sensitive = 'balance', cdc = 'on');

CREATE TABLE transfers (
    id BIGINT PRIMARY KEY,
    region TEXT NOT NULL,
    from_account BIGINT NOT NULL,
    to_account BIGINT NOT NULL,
    amount DECIMAL(18,2) NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    created TIMESTAMP NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', sensitive = 'amount');

CREATE TABLE currencies (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    decimals INT NOT NULL
) WITH (locality = 'global');

INSERT INTO currencies VALUES
    ('USD', 'US dollar', 2),
    ('EUR', 'Euro', 2),
    ('SGD', 'Singapore dollar', 2);
