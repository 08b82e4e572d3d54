"""One query through stock ADBC, using only what `domicile demo` wrote to mesh.json.

Usage: first_query.py MESH_JSON. Exits non-zero (with the reason) if the file does not
give a script what it needs: a Flight SQL URL ADBC accepts as given, a user with its
password, and the user's home region as the node sees it.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql


def main(path: str) -> None:
    with open(path) as file:
        mesh = json.load(file)
    regions = mesh["regions"]
    assert [r["region"] for r in regions] == ["us-east", "eu-central", "ap-southeast"], regions
    for region in regions:
        user = next(u for u in region["users"] if u["role"] == "admin")
        assert user["home_region"] == region["region"], user
        with flightsql.connect(
            region["flight_sql"],
            db_kwargs={"username": user["name"], "password": user["password"]},
            autocommit=True,
        ) as conn, conn.cursor() as cur:
            cur.execute("SELECT region, count(*) AS n FROM accounts GROUP BY region")
            rows = cur.fetchall()
            assert [r[0] for r in rows] == [region["region"]], rows
            assert rows[0][1] > 0, rows
            print(f"{region['region']}: {region['flight_sql']} answered {rows}")


if __name__ == "__main__":
    main(sys.argv[1])
