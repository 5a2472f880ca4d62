"""Writes the small MaxMind databases of tests/enrich.rs (mmdb-writer, installed by .ci/services.sh).

usage: make_mmdb.py OUT.mmdb city-a|city-b|country

city-a and city-b differ only in where 128.103.0.0/16 is (Cambridge vs Boston), so a replay with
the other database changes exactly the enriched fields.
"""
import sys

from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16
from netaddr import IPSet

out, kind = sys.argv[1], sys.argv[2]


def names(en):
    return {"names": {"en": en, "de": en}}


us = {"iso_code": "US", "geoname_id": 6252001, **names("United States")}
na = {"code": "NA", "geoname_id": 6255149, **names("North America")}


def city(name, lat, lon, postal, metro):
    return {
        "city": names(name),
        "continent": na,
        "country": us,
        "registered_country": us,
        "location": {
            "latitude": MmdbF64(lat),
            "longitude": MmdbF64(lon),
            "metro_code": MmdbU16(metro),
            "time_zone": "America/New_York",
            "accuracy_radius": MmdbU16(20),
        },
        "postal": {"code": postal},
        "subdivisions": [{"iso_code": "MA", **names("Massachusetts")}],
    }


gb_only = {
    "continent": {"code": "EU", **names("Europe")},
    "country": {"iso_code": "GB", **names("United Kingdom")},
}
mountain_view = {
    "city": names("Mountain View"),
    "continent": na,
    "country": us,
    "location": {"latitude": MmdbF64(37.386), "longitude": MmdbF64(-122.0838), "time_zone": "America/Los_Angeles"},
    "subdivisions": [{"iso_code": "CA", **names("California")}],
}

if kind == "bench":
    # benches/enrich.rs: 2,000 /24 networks in 20.0.0.0-89.255.255.255, 50 cities among them.
    import random

    rnd = random.Random(7)
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-City", languages=["en"], ipv4_compatible=True)
    cities = [city(f"City {i}", 20 + i * 0.5, -120 + i, f"{10000 + i}", 500 + i) for i in range(50)]
    seen = set()
    while len(seen) < 2000:
        a, b, c = rnd.randrange(20, 90), rnd.randrange(256), rnd.randrange(256)
        if (a, b, c) in seen:
            continue
        seen.add((a, b, c))
        w.insert_network(IPSet([f"{a}.{b}.{c}.0/24"]), cities[len(seen) % 50])
    w.to_db_file(out)
    with open(out + ".networks", "w") as f:
        f.write("\n".join(f"{a}.{b}.{c}" for a, b, c in sorted(seen)))
    sys.exit(0)
if kind == "country":
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", languages=["en"], ipv4_compatible=True)
    w.insert_network(IPSet(["128.103.0.0/16"]), {"continent": na, "country": us})
    w.insert_network(IPSet(["81.2.69.0/24"]), gb_only)
else:
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-City", languages=["en", "de"], ipv4_compatible=True)
    if kind == "city-a":
        w.insert_network(IPSet(["128.103.0.0/16"]), city("Cambridge", 42.3751, -71.1056, "02138", 506))
    else:
        w.insert_network(IPSet(["128.103.0.0/16"]), city("Boston", 42.3584, -71.0598, "02108", 506))
    # A country-only entry in a City database.
    w.insert_network(IPSet(["81.2.69.0/24"]), gb_only)
    w.insert_network(IPSet(["2001:4860::/32"]), mountain_view)
w.to_db_file(out)
