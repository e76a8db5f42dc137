"""SPEC §6: Mongo-style filters, orderings and cursor pages.

Parsing is checked on its own; evaluation runs the same cases on SQLite and on
PostgreSQL (a throwaway database created for this session, dropped at its end).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Select, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from regalia.core.filters import (
    And,
    Compare,
    Exists,
    Not,
    Or,
    Order,
    parse_filter,
    parse_order,
)
from regalia.errors import InvalidFilter
from regalia.store.db import make_engine
from regalia.store.filters import (
    collection_where,
    next_cursor,
    paginate,
    registry_where,
    version_where,
)
from regalia.store.models import (
    Alias,
    Base,
    Collection,
    CollectionTag,
    Membership,
    Organization,
    Registry,
    Version,
    VersionTag,
)

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def t(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


# -- parsing ------------------------------------------------------------------------


def test_implicit_eq_and_implicit_and() -> None:
    assert parse_filter({"name": "x"}, "registry") == Compare("name", "$eq", "x")
    assert parse_filter({"name": "x", "visibility": "restricted"}, "registry") == And(
        (Compare("name", "$eq", "x"), Compare("visibility", "$eq", "restricted"))
    )
    assert parse_filter(None, "version") == And(())
    assert parse_filter({}, "version") == And(())


def test_several_operators_on_one_field_are_anded() -> None:
    node = parse_filter(
        {"created_at": {"$gte": "2024-01-01T00:00:00Z", "$lt": "2024-02-01T00:00:00Z"}},
        "collection",
    )
    assert node == And(
        (
            Compare("created_at", "$gte", datetime(2024, 1, 1, tzinfo=UTC)),
            Compare("created_at", "$lt", datetime(2024, 2, 1, tzinfo=UTC)),
        )
    )


def test_synonyms_metadata_keys_versions_and_regex_flags() -> None:
    assert parse_filter({"tags": "a"}, "version") == Compare("tag", "$eq", "a")
    assert parse_filter({"aliases": "Prod"}, "version") == Compare("alias", "$eq", "Prod")
    assert parse_filter({"collection": "c"}, "version") == Compare("name", "$eq", "c")
    assert parse_filter({"metadata.train.lr": 0.1}, "version") == Compare(
        "metadata", "$eq", 0.1, key=("train", "lr")
    )
    assert parse_filter({"version": {"$in": ["v3", 4]}}, "version") == Compare(
        "version", "$in", (3, 4)
    )
    assert parse_filter({"name": {"$regex": "(?i)^ab"}}, "registry") == Compare(
        "name", "$regex", "^ab", ignore_case=True
    )
    assert parse_filter({"name": {"$regex": "^ab", "$options": "i"}}, "registry") == Compare(
        "name", "$regex", "^ab", ignore_case=True
    )


def test_logic_operators_build_the_tree() -> None:
    node = parse_filter(
        {"$or": [{"tag": "a"}, {"$not": {"alias": {"$exists": True}}}]},
        "version",
    )
    assert node == Or((Compare("tag", "$eq", "a"), Not(Exists("alias", True))))
    assert parse_filter({"name": {"$not": {"$regex": "^tmp"}}}, "collection") == Not(
        Compare("name", "$regex", "^tmp")
    )
    assert parse_filter({"name": {"$not": "^tmp"}}, "collection") == Not(
        Compare("name", "$regex", "^tmp")
    )


def test_datetimes_are_read_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    expected = datetime(2024, 1, 1, 10, tzinfo=UTC)
    for value in (
        "2024-01-01T12:00:00+02:00",
        "2024-01-01T10:00:00Z",
        "2024-01-01T10:00:00",
        datetime(2024, 1, 1, 12, tzinfo=plus_two),
        datetime(2024, 1, 1, 10),
    ):
        node = parse_filter({"updated_at": {"$gt": value}}, "registry")
        assert node == Compare("updated_at", "$gt", expected)
        assert isinstance(node, Compare) and node.value.tzinfo == UTC  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entity", "filter", "message"),
    [
        ("registry", {"name": {"$foo": 1}}, "unknown operator '$foo' on field 'name'"),
        ("registry", {"nme": "x"}, "unknown field 'nme' for registry filters"),
        ("registry", {"tag": "x"}, "unknown field 'tag' for registry filters"),
        ("collection", {"alias": "x"}, "unknown field 'alias' for collection filters"),
        ("registry", {"$nor": [{"name": "x"}]}, "unknown operator '$nor' at the top"),
        ("registry", {"name": 3}, "'$eq' on field 'name' needs a string, got a number"),
        ("registry", {"name": None}, "'$eq' on field 'name' needs a string, got null"),
        ("registry", {"name": ["a"]}, "use '$in' for a list of values"),
        ("registry", {"name": {"$in": "a"}}, "'$in' on field 'name' needs a list, got a string"),
        ("registry", {"name": {"$nin": 1}}, "'$nin' on field 'name' needs a list"),
        ("registry", {"name": {"$regex": "("}}, "'$regex' on field 'name' is not RE2 syntax"),
        ("registry", {"name": {"$regex": 5}}, "'$regex' on field 'name' needs a string"),
        ("registry", {"name": {"$regex": "a", "$options": "x"}}, "may only be 'i'"),
        ("registry", {"name": {"$options": "i"}}, "'$options' on field 'name' needs a '$regex'"),
        ("registry", {"name": {"$regex": "(?P<n>a)"}}, "uses an inline flag or a named group"),
        ("registry", {"name": {"$regex": "(?s)a.b"}}, "uses an inline flag or a named group"),
        ("registry", {"name": {"$regex": "(?>ab)"}}, "is not RE2 syntax"),
        ("registry", {"name": {"$regex": "c(?=o)"}}, "RE2 syntax is required"),
        ("registry", {"name": {"$regex": "(?<!x)c"}}, "RE2 syntax is required"),
        ("registry", {"name": {"$regex": r"(a)\1"}}, "RE2 syntax is required"),
        ("registry", {"name": {"$regex": r"\pL"}}, "uses a Unicode class"),
        ("registry", {"name": {"$regex": r"[\p{Greek}]"}}, "uses a Unicode class"),
        ("registry", {"name": {"$regex": r"\Qa.b\E"}}, "uses '\\Q...\\E'"),
        ("registry", {"name": {"$regex": r"a\z"}}, "uses '\\z' (write '$')"),
        ("registry", {"name": {"$regex": "a{256}"}}, "a repetition count above 255"),
        ("registry", {"name": {"$regex": "x" * 257}}, "has 257 characters; the limit is 256"),
        ("registry", {"name": {"$regex": ".{200}"}}, "is too complex"),
        ("registry", {"name": {"$regex": r"\bword"}}, "uses '\\b' or '\\B'"),
        ("registry", {"name": {"$regex": r"a\B"}}, "uses '\\b' or '\\B'"),
        ("registry", {"name": {"$regex": "a{,3}"}}, "uses '{,n}' (write '{0,n}')"),
        ("registry", {"name": {"$regex": "a*+"}}, "RE2 syntax is required"),
        ("registry", {"name": {"$regex": "a{2}+"}}, "RE2 syntax is required"),
        ("registry", {"name": {"$exists": "yes"}}, "'$exists' on field 'name' needs true or false"),
        ("registry", {"name": {"$eq": "a", "plain": 1}}, "mixes operators with the plain key"),
        ("registry", {"name": {"$and": [{}]}}, "'$and' cannot be used inside field 'name'"),
        ("registry", {"name": {"$not": 1}}, "'$not' on field 'name' needs an object"),
        ("registry", {"name": {}}, "field 'name' cannot be compared with an object"),
        ("registry", {"$and": []}, "'$and' needs a non-empty list of filters"),
        ("registry", {"$or": {"name": "x"}}, "'$or' needs a non-empty list of filters"),
        ("registry", {"$and": ["x"]}, "'$and' item 0 must be an object, got a string"),
        ("registry", {"$not": []}, "'$not' must be an object, got a list"),
        ("registry", {"created_at": "yesterday"}, "needs an ISO-8601 date-time"),
        ("registry", {"created_at": {"$gt": 5}}, "'$gt' on field 'created_at' needs an ISO-8601"),
        ("registry", {"created_at": {"$regex": "2024"}}, "'$regex' is not supported on field"),
        ("version", {"version": "latest"}, "needs a version like 'v3' or 3, got 'latest'"),
        ("version", {"version": True}, "needs a version like 'v3' or 3, got a boolean"),
        ("version", {"version": -1}, "version index -1 is out of range"),
        ("version", {"version": {"$regex": "v1"}}, "'$regex' is not supported on field 'version'"),
        ("version", {"metadata": {"a": 1}}, "field 'metadata' needs a key"),
        ("version", {"metadata.": 1}, "invalid metadata key in field 'metadata.'"),
        ("version", {"metadata.a,b": 1}, "invalid metadata key in field 'metadata.a,b'"),
        ("version", {"metadata.a": {"$gt": True}}, "needs a number or a string, got a boolean"),
        ("version", {"metadata.a": {"$lt": None}}, "needs a number or a string, got null"),
        ("version", {"metadata.a": [1]}, "use '$in' for a list of values"),
        ("version", {"metadata.a": {"x": 1}}, "cannot be compared with an object"),
        ("version", {"metadata.a": float("nan")}, "needs a finite number"),
        ("registry", {"metadata.a": 1}, "unknown field 'metadata.a' for registry filters"),
    ],
)
def test_invalid_filters_name_the_problem(entity: Any, filter: Any, message: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(filter, entity)
    assert message in str(info.value)
    assert info.value.code == "invalid_filter"
    assert info.value.http_status == 400


def test_a_filter_must_be_an_object_for_a_known_entity() -> None:
    with pytest.raises(InvalidFilter, match="filter must be an object, got a list"):
        parse_filter([{"name": "x"}], "registry")  # type: ignore[arg-type]
    with pytest.raises(InvalidFilter, match="unknown entity 'artifact'"):
        parse_filter({}, "artifact")  # type: ignore[arg-type]


def test_orders() -> None:
    assert parse_order(None, "registry") == Order("created_at", descending=True)
    assert parse_order("name", "collection") == Order("name", descending=False)
    assert parse_order("-version", "version") == Order("version", descending=True)
    with pytest.raises(InvalidFilter, match="cannot order registry results by 'version'"):
        parse_order("version", "registry")
    with pytest.raises(InvalidFilter, match="cannot order version results by '-size'"):
        parse_order("-size", "version")


# -- databases -----------------------------------------------------------------------


@dataclass
class Db:
    engine: Engine
    org: int  # the organization with the hand-made data set
    bulk_org: int  # the organization with 25 of each, for paging
    bulk_collection: int


def _postgres_url() -> Iterator[str]:
    name = f"regalia_test_filters_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    """The schema and both data sets on one backend; tests only read it."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("filters") / "regalia.db"
        urls: Iterator[str] = iter([f"sqlite:///{path}"])
    else:
        urls = _postgres_url()
    url = next(urls)
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            org = _hand_made_data(session)
            bulk_org, bulk_collection = _bulk_data(session)
            session.commit()
        yield Db(engine, org, bulk_org, bulk_collection)
    finally:
        engine.dispose()
        for _ in urls:  # runs the PostgreSQL generator's cleanup
            pass


def _add(session: Session, obj: Any) -> Any:
    session.add(obj)
    session.flush()
    return obj


def _registry(session: Session, org: int, name: str, created: datetime, **kw: Any) -> Registry:
    kw.setdefault("description", "")
    kw.setdefault("visibility", "organization")
    kw.setdefault("updated_at", created)
    return _add(
        session,
        Registry(org_id=org, name=name, name_key=name.lower(), created_at=created, **kw),
    )


def _portfolio(
    session: Session,
    org: int,
    registry: Registry,
    name: str,
    type: str,
    created: datetime,
    **kw: Any,
) -> Collection:
    kw.setdefault("description", "")
    kw.setdefault("updated_at", created)
    return _add(
        session,
        Collection(
            org_id=org,
            kind="portfolio",
            registry_id=registry.id,
            name=name,
            name_key=name.lower(),
            type=type,
            created_at=created,
            **kw,
        ),
    )


def _hand_made_data(session: Session) -> int:
    """Three registries, three collections, five versions linked six times.

    ====================  =====  =========================  ==========================
    linked version        src    aliases                    version tags
    ====================  =====  =========================  ==========================
    classifier:v0         V0     Production                 prod, baseline
    classifier:v1         V1     staging                    candidate
    classifier:v2         V2     latest                     -
    detector:v0           V3     best                       prod
    detector:v1           V0     latest                     prod, baseline
    corpus:v0             V4     latest                     raw data
    ====================  =====  =========================  ==========================
    """
    org = _add(session, Organization(name="acme", created_at=T0)).id
    model = _registry(session, org, "model", t(0), description="Production models", updated_at=t(0))
    dataset = _registry(
        session, org, "dataset", t(1), description="Curated data", visibility="restricted"
    )
    _registry(session, org, "Experiments", t(2), updated_at=t(3))

    classifier = _portfolio(
        session, org, model, "classifier", "model", t(10), description="Image classifier"
    )
    detector = _portfolio(
        session, org, model, "detector", "model", t(11), description="Object detector"
    )
    corpus = _portfolio(session, org, dataset, "corpus", "dataset", t(12))
    for collection, tags in ((classifier, ["vision", "prod"]), (detector, ["vision"])):
        for tag in tags:
            session.add(CollectionTag(collection_id=collection.id, tag=tag))

    sequence = _add(
        session,
        Collection(
            org_id=org, kind="sequence", name="trainer", name_key="trainer", type="model",
            created_at=T0, updated_at=T0,
        ),
    )  # fmt: skip
    specs: list[tuple[str, dict[str, Any], list[str], datetime]] = [
        (
            "first good model",
            {"framework": "pytorch", "accuracy": 0.93, "train": {"epochs": 10, "lr": 0.001},
             "ok": True},
            ["prod", "baseline"],
            t(20),
        ),
        (
            "jax experiment",
            {"framework": "jax", "accuracy": 0.81, "train": {"epochs": 5}, "ok": False,
             "note": None},
            ["candidate"],
            t(30),
        ),
        ("", {"framework": "pytorch", "accuracy": 1, "train": {"epochs": "ten"}}, [], t(22)),
        ("detector base", {}, ["prod"], t(23)),
        ("text corpus", {"accuracy": "high", "framework": "TensorFlow", "big": 2**40},
         ["raw data"], t(24)),
    ]  # fmt: skip
    versions = []
    for index, (description, metadata, tags, updated) in enumerate(specs):
        version = _add(
            session,
            Version(
                sequence_id=sequence.id,
                version_index=index,
                digest=f"{index:064d}",
                description=description,
                metadata_=metadata,
                created_at=t(20 + index),
                updated_at=updated,
            ),
        )
        versions.append(version)
        for tag in tags:
            session.add(VersionTag(version_id=version.id, tag=tag))

    links = [
        (classifier, 0, versions[0], "Production"),
        (classifier, 1, versions[1], "staging"),
        (classifier, 2, versions[2], "latest"),
        (detector, 0, versions[3], "best"),
        (detector, 1, versions[0], "latest"),
        (corpus, 0, versions[4], "latest"),
    ]
    for collection, index, version, alias in links:
        membership = _add(
            session,
            Membership(
                collection_id=collection.id,
                version_id=version.id,
                version_index=index,
                created_at=t(40 + index),
            ),
        )
        session.add(
            Alias(
                collection_id=collection.id,
                membership_id=membership.id,
                name=alias,
                name_key=alias.lower(),
                updated_at=t(40),
            )
        )
    session.flush()
    return int(org)


BULK = 25


def _bulk_time(i: int) -> datetime:
    return t(100 + (i * 7) % 9)  # many ties, in no particular order


def _bulk_name(i: int) -> str:
    return f"{'Item' if i % 2 else 'item'}-{(i * 11) % BULK:02d}"


def _bulk_data(session: Session) -> tuple[int, int]:
    """25 registries, 25 collections and 25 linked versions with ties in every order."""
    org = _add(session, Organization(name="bulk", created_at=T0)).id
    registries = [
        _registry(session, org, _bulk_name(i), _bulk_time(i), updated_at=_bulk_time(i + 3))
        for i in range(BULK)
    ]
    for i in range(BULK):
        _portfolio(
            session, org, registries[0], _bulk_name(i), "model", _bulk_time(i),
            updated_at=_bulk_time(i + 5),
        )  # fmt: skip
    bulk = _portfolio(session, org, registries[1], "bulk", "model", T0)
    sequence = _add(
        session,
        Collection(
            org_id=org, kind="sequence", name="bulk", name_key="bulk", type="model",
            created_at=T0, updated_at=T0,
        ),
    )  # fmt: skip
    for i in range(BULK):
        version = _add(
            session,
            Version(
                sequence_id=sequence.id,
                version_index=i,
                digest=f"{i:064d}",
                metadata_={"step": i},
                created_at=_bulk_time(i),
                updated_at=_bulk_time(i + 1),
            ),
        )
        index = (i * 7) % BULK  # link order differs from creation order
        session.add(
            Membership(
                collection_id=bulk.id, version_id=version.id, version_index=index, created_at=T0
            )
        )
    session.flush()
    return int(org), int(bulk.id)


def _versions_base() -> Select[Any]:
    return (
        select(Membership, Version, Collection, Registry)
        .join(Version, Version.id == Membership.version_id)
        .join(Collection, Collection.id == Membership.collection_id)
        .join(Registry, Registry.id == Collection.registry_id)
        .where(Collection.kind == "portfolio")
    )


def linked(db: Db, filter: dict[str, Any]) -> set[str]:
    stmt = _versions_base().where(
        Registry.org_id == db.org, version_where(parse_filter(filter, "version"))
    )
    with Session(db.engine) as session:
        return {f"{c.name}:v{m.version_index}" for m, _v, c, _r in session.execute(stmt)}


def registries(db: Db, filter: dict[str, Any]) -> set[str]:
    stmt = select(Registry.name).where(
        Registry.org_id == db.org, registry_where(parse_filter(filter, "registry"))
    )
    with Session(db.engine) as session:
        return set(session.scalars(stmt))


def collections(db: Db, filter: dict[str, Any]) -> set[str]:
    stmt = select(Collection.name).where(
        Collection.org_id == db.org,
        Collection.kind == "portfolio",
        collection_where(parse_filter(filter, "collection")),
    )
    with Session(db.engine) as session:
        return set(session.scalars(stmt))


C0, C1, C2 = "classifier:v0", "classifier:v1", "classifier:v2"
D0, D1, K0 = "detector:v0", "detector:v1", "corpus:v0"
ALL = {C0, C1, C2, D0, D1, K0}


def iso(hours: int, tz: timezone = UTC) -> str:
    return t(hours).astimezone(tz).isoformat()


VERSION_CASES: list[tuple[dict[str, Any], set[str]]] = [
    # name (the collection's), collection, registry, description, type
    ({"name": "classifier"}, {C0, C1, C2}),
    ({"name": "Classifier"}, set()),
    ({"collection": "detector"}, {D0, D1}),
    ({"name": {"$ne": "classifier"}}, {D0, D1, K0}),
    ({"name": {"$in": ["detector", "corpus"]}}, {D0, D1, K0}),
    ({"name": {"$nin": ["detector", "corpus"]}}, {C0, C1, C2}),
    ({"name": {"$in": []}}, set()),
    ({"name": {"$nin": []}}, ALL),
    ({"name": {"$regex": "^c"}}, {C0, C1, C2, K0}),
    ({"name": {"$regex": "^C"}}, set()),
    ({"name": {"$regex": "^C", "$options": "i"}}, {C0, C1, C2, K0}),
    ({"name": {"$regex": "(?i)^C"}}, {C0, C1, C2, K0}),
    ({"name": {"$regex": r"o\w+s$"}}, {K0}),
    ({"name": {"$gt": "corpus"}}, {D0, D1}),
    ({"name": {"$gte": "corpus"}}, {D0, D1, K0}),
    ({"name": {"$lt": "corpus"}}, {C0, C1, C2}),
    ({"name": {"$lte": "corpus"}}, {C0, C1, C2, K0}),
    ({"name": {"$exists": True}}, ALL),
    ({"name": {"$exists": False}}, set()),
    ({"registry": "dataset"}, {K0}),
    ({"registry": {"$regex": "^mod"}}, {C0, C1, C2, D0, D1}),
    ({"description": "jax experiment"}, {C1}),
    ({"description": ""}, {C2}),
    ({"description": {"$regex": "model"}}, {C0, D1}),
    ({"type": "dataset"}, {K0}),
    ({"type": {"$ne": "dataset"}}, {C0, C1, C2, D0, D1}),
    # tags: any tag matches; $ne / $nin: no tag matches
    ({"tag": "prod"}, {C0, D0, D1}),
    ({"tags": "prod"}, {C0, D0, D1}),
    ({"tag": "Prod"}, set()),
    ({"tag": {"$ne": "prod"}}, {C1, C2, K0}),
    ({"tag": {"$in": ["candidate", "raw data"]}}, {C1, K0}),
    ({"tag": {"$nin": ["prod", "candidate"]}}, {C2, K0}),
    ({"tag": {"$regex": "^ba"}}, {C0, D1}),
    ({"tag": {"$regex": "DATA", "$options": "i"}}, {K0}),
    ({"tag": {"$gt": "prod"}}, {K0}),
    ({"tag": {"$gte": "prod"}}, {C0, D0, D1, K0}),
    ({"tag": {"$lt": "c"}}, {C0, D1}),
    ({"tag": {"$lte": "candidate"}}, {C0, C1, D1}),
    ({"tag": {"$exists": True}}, {C0, C1, D0, D1, K0}),
    ({"tag": {"$exists": False}}, {C2}),
    # aliases: per linked version, ignoring case
    ({"alias": "production"}, {C0}),
    ({"alias": "PRODUCTION"}, {C0}),
    ({"aliases": "latest"}, {C2, D1, K0}),
    ({"alias": {"$ne": "latest"}}, {C0, C1, D0}),
    ({"alias": {"$in": ["Best", "staging"]}}, {C1, D0}),
    ({"alias": {"$nin": ["LATEST", "best"]}}, {C0, C1}),
    ({"alias": {"$regex": "^prod"}}, {C0}),
    ({"alias": {"$gt": "Latest"}}, {C0, C1}),
    ({"alias": {"$lte": "best"}}, {D0}),
    ({"alias": {"$exists": True}}, ALL),
    ({"alias": {"$exists": False}}, set()),
    # version index
    ({"version": 1}, {C1, D1}),
    ({"version": "v1"}, {C1, D1}),
    ({"version": {"$ne": "v0"}}, {C1, C2, D1}),
    ({"version": {"$gte": "v1"}}, {C1, C2, D1}),
    ({"version": {"$gt": 1}}, {C2}),
    ({"version": {"$lt": 1}}, {C0, D0, K0}),
    ({"version": {"$lte": "v0"}}, {C0, D0, K0}),
    ({"version": {"$in": ["v0", 2]}}, {C0, C2, D0, K0}),
    ({"version": {"$nin": [0]}}, {C1, C2, D1}),
    # metadata: strings
    ({"metadata.framework": "pytorch"}, {C0, C2, D1}),
    ({"metadata.framework": {"$ne": "pytorch"}}, {C1, D0, K0}),
    ({"metadata.framework": {"$in": ["jax", "TensorFlow"]}}, {C1, K0}),
    ({"metadata.framework": {"$nin": ["jax"]}}, ALL - {C1}),
    ({"metadata.framework": {"$regex": "^py"}}, {C0, C2, D1}),
    ({"metadata.framework": {"$regex": "^t"}}, set()),
    ({"metadata.framework": {"$regex": "^t", "$options": "i"}}, {K0}),
    ({"metadata.framework": {"$gt": "pytorch"}}, set()),
    ({"metadata.framework": {"$lt": "jax"}}, {K0}),  # bytewise: "T" < "j"
    ({"metadata.accuracy": "high"}, {K0}),
    ({"metadata.accuracy": {"$gt": "a"}}, {K0}),
    # metadata: numbers (a string in the same key never matches, and never fails)
    ({"metadata.accuracy": 0.93}, {C0, D1}),
    ({"metadata.accuracy": 1}, {C2}),
    ({"metadata.accuracy": 1.0}, {C2}),
    ({"metadata.accuracy": {"$gt": 0.9}}, {C0, C2, D1}),
    ({"metadata.accuracy": {"$gte": 1}}, {C2}),
    ({"metadata.accuracy": {"$lt": 0.9}}, {C1}),
    ({"metadata.accuracy": {"$lte": 0.81}}, {C1}),
    ({"metadata.accuracy": {"$ne": 0.93}}, ALL - {C0, D1}),
    ({"metadata.framework": {"$gt": 1}}, set()),
    ({"metadata.train.epochs": 10}, {C0, D1}),
    ({"metadata.train.epochs": {"$gte": 5}}, {C0, C1, D1}),
    ({"metadata.train.epochs": "ten"}, {C2}),
    ({"metadata.train.lr": {"$lt": 0.01}}, {C0, D1}),
    ({"metadata.big": {"$gt": 2**39}}, {K0}),
    ({"metadata.big": 2**40}, {K0}),
    # metadata: booleans, null, mixed $in, $exists
    ({"metadata.ok": True}, {C0, D1}),
    ({"metadata.ok": False}, {C1}),
    ({"metadata.ok": {"$ne": True}}, {C1, C2, D0, K0}),
    ({"metadata.ok": 1}, set()),
    ({"metadata.accuracy": True}, set()),
    ({"metadata.note": None}, ALL),
    ({"metadata.note": {"$ne": None}}, set()),
    ({"metadata.framework": None}, {D0}),
    ({"metadata.framework": {"$ne": None}}, ALL - {D0}),
    ({"metadata.accuracy": {"$in": [0.81, "high", None]}}, {C1, D0, K0}),
    ({"metadata.accuracy": {"$nin": [0.81, "high", None]}}, {C0, C2, D1}),
    ({"metadata.note": {"$exists": True}}, {C1}),
    ({"metadata.note": {"$exists": False}}, ALL - {C1}),
    ({"metadata.train": {"$exists": True}}, {C0, C1, C2, D1}),
    ({"metadata.train.epochs": {"$exists": False}}, {D0, K0}),
    ({"metadata.missing.deeper": {"$exists": True}}, set()),
    ({"metadata.framework.deeper": "x"}, set()),
    # dates
    ({"created_at": iso(20)}, {C0, D1}),
    ({"created_at": {"$ne": iso(20)}}, {C1, C2, D0, K0}),
    ({"created_at": {"$gte": iso(22)}}, {C2, D0, K0}),
    ({"created_at": {"$gte": iso(22, timezone(timedelta(hours=5)))}}, {C2, D0, K0}),
    ({"created_at": {"$gte": t(22).replace(tzinfo=None).isoformat()}}, {C2, D0, K0}),
    ({"created_at": {"$gt": t(22)}}, {D0, K0}),
    ({"created_at": {"$lt": iso(21)}}, {C0, D1}),
    ({"created_at": {"$lte": iso(21)}}, {C0, C1, D1}),
    ({"created_at": {"$gte": iso(21), "$lt": iso(23)}}, {C1, C2}),
    ({"created_at": {"$in": [iso(21), iso(24)]}}, {C1, K0}),
    ({"created_at": {"$nin": [iso(21), iso(24)]}}, {C0, C2, D0, D1}),
    ({"updated_at": {"$gt": iso(25)}}, {C1}),
    # logic
    ({}, ALL),
    ({"tag": "prod", "version": 1}, {D1}),
    ({"$and": [{"tag": "prod"}, {"name": "detector"}]}, {D0, D1}),
    ({"$or": [{"alias": "best"}, {"metadata.ok": False}]}, {C1, D0}),
    ({"$not": {"tag": "prod"}}, {C1, C2, K0}),
    ({"$not": {"metadata.ok": True}}, {C1, C2, D0, K0}),
    ({"$not": {"metadata.accuracy": {"$gt": 0.9}}}, {C1, D0, K0}),
    ({"$not": {"metadata.framework": {"$regex": "^py"}}}, {C1, D0, K0}),
    ({"name": {"$not": {"$regex": "^c"}}}, {D0, D1}),
    ({"name": {"$not": "^c"}}, {D0, D1}),
    ({"version": {"$not": {"$gte": 1, "$lte": 1}}}, {C0, C2, D0, K0}),
    (
        {
            "$or": [
                {"$and": [{"registry": "model"}, {"$not": {"version": 0}}]},
                {"metadata.framework": "TensorFlow"},
            ]
        },
        {C1, C2, D1, K0},
    ),
    ({"$not": {"$or": [{"tag": "prod"}, {"alias": "latest"}]}}, {C1}),
    (
        {"$and": [{"$or": [{"tag": "prod"}, {"tag": "candidate"}]}, {"version": {"$gt": 0}}]},
        {C1, D1},
    ),
]


@pytest.mark.parametrize(
    ("filter", "expected"), VERSION_CASES, ids=[str(c[0]) for c in VERSION_CASES]
)
def test_version_filters(db: Db, filter: dict[str, Any], expected: set[str]) -> None:
    assert linked(db, filter) == expected


PORTABLE_PATTERNS = [
    r"^c",
    r"o\w+s$",
    r"(?:ier)+$",
    r"^d.{0,3}e",
    r"c[o]",
    r"(?i)^C",
    r"(?:c|x)o",
    r"\Acorpus",
    r"^.{9}r$",
    r"[(?]|e",
    r"\(\?|r$",
    r"\\b|t",
    r"\d*[a-z]+?s\s*$",
    r"^(classifier|corpus)$",
    r"^[^x]+$",
]


@pytest.mark.parametrize("pattern", PORTABLE_PATTERNS)
def test_accepted_patterns_match_alike_everywhere(db: Db, pattern: str) -> None:
    import re

    names = {"classifier": {C0, C1, C2}, "detector": {D0, D1}, "corpus": {K0}}
    expected = set().union(*(v for k, v in names.items() if re.search(pattern, k)))
    assert linked(db, {"name": {"$regex": pattern}}) == expected
    upper = {k for k in names if re.search(pattern, k.upper(), re.IGNORECASE)}
    assert linked(db, {"name": {"$regex": pattern, "$options": "i"}}) == set().union(
        *(names[k] for k in upper)
    )


REGISTRY_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"name": "model"}, {"model"}),
    ({"name": "Model"}, set()),
    ({"name": {"$regex": "(?i)^exp"}}, {"Experiments"}),
    ({"name": {"$in": ["model", "dataset"]}}, {"model", "dataset"}),
    ({"name": {"$nin": ["model", "dataset"]}}, {"Experiments"}),
    ({"name": {"$lt": "a"}}, {"Experiments"}),  # bytewise on both databases
    ({"name": {"$gte": "e"}}, {"model"}),
    ({"visibility": "restricted"}, {"dataset"}),
    ({"visibility": {"$ne": "restricted"}}, {"model", "Experiments"}),
    ({"description": {"$regex": "models"}}, {"model"}),
    ({"description": ""}, {"Experiments"}),
    ({"created_at": {"$gt": iso(0)}}, {"dataset", "Experiments"}),
    ({"created_at": {"$lte": iso(1)}}, {"model", "dataset"}),
    ({"updated_at": {"$gte": iso(3)}}, {"Experiments"}),
    ({"name": {"$exists": True}}, {"model", "dataset", "Experiments"}),
    ({"$or": [{"name": "model"}, {"visibility": "restricted"}]}, {"model", "dataset"}),
    ({"$not": {"name": "model"}}, {"dataset", "Experiments"}),
]


@pytest.mark.parametrize(
    ("filter", "expected"), REGISTRY_CASES, ids=[str(c[0]) for c in REGISTRY_CASES]
)
def test_registry_filters(db: Db, filter: dict[str, Any], expected: set[str]) -> None:
    assert registries(db, filter) == expected


COLLECTION_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"name": "corpus"}, {"corpus"}),
    ({"name": {"$regex": "or$"}}, {"detector"}),
    ({"tag": "vision"}, {"classifier", "detector"}),
    ({"tags": "prod"}, {"classifier"}),
    ({"tag": {"$ne": "prod"}}, {"detector", "corpus"}),
    ({"tags": {"$nin": ["prod", "vision"]}}, {"corpus"}),
    ({"tag": {"$in": ["prod", "nothing"]}}, {"classifier"}),
    ({"tag": {"$regex": "^vis"}}, {"classifier", "detector"}),
    ({"tag": {"$exists": False}}, {"corpus"}),
    ({"tag": {"$exists": True}}, {"classifier", "detector"}),
    ({"type": "dataset"}, {"corpus"}),
    ({"description": ""}, {"corpus"}),
    ({"description": {"$regex": "detector", "$options": "i"}}, {"detector"}),
    ({"created_at": {"$lte": iso(11)}}, {"classifier", "detector"}),
    ({"updated_at": {"$gt": iso(11)}}, {"corpus"}),
    ({"$and": [{"tag": "vision"}, {"$not": {"tag": "prod"}}]}, {"detector"}),
]


@pytest.mark.parametrize(
    ("filter", "expected"), COLLECTION_CASES, ids=[str(c[0]) for c in COLLECTION_CASES]
)
def test_collection_filters(db: Db, filter: dict[str, Any], expected: set[str]) -> None:
    assert collections(db, filter) == expected


# -- pages ---------------------------------------------------------------------------


def _all_pages(
    db: Db, stmt: Select[Any], entity: Any, order: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], list[int]]:
    items: list[tuple[Any, ...]] = []
    sizes: list[int] = []
    cursor = None
    with Session(db.engine) as session:
        for _ in range(BULK + 2):
            query = paginate(stmt, entity=entity, order=order, cursor=cursor, limit=limit)
            page = query.read(session.execute(query.stmt))
            items.extend(page.items)
            sizes.append(len(page.items))
            cursor = page.next_cursor
            if cursor is None:
                return items, sizes
    raise AssertionError("paging did not end")


def _expected(rows: list[tuple[Any, int]], descending: bool) -> list[int]:
    return [row_id for _key, row_id in sorted(rows, reverse=descending)]


def _key(value: Any) -> Any:
    # SQLite hands back naive datetimes (stored as UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


ORDERS = ["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]


@pytest.mark.parametrize("limit", [10, 5])
@pytest.mark.parametrize("order", [*ORDERS, None])
def test_registry_pages_return_every_row_once_in_order(
    db: Db, order: str | None, limit: int
) -> None:
    stmt = select(Registry).where(Registry.org_id == db.bulk_org)
    items, sizes = _all_pages(db, stmt, "registry", order, limit)
    field = (order or "-created_at").lstrip("-")
    with Session(db.engine) as session:
        rows = [
            (_key(r.name_key if field == "name" else getattr(r, field)), r.id)
            for r in session.scalars(stmt)
        ]
    assert [r.id for (r,) in items] == _expected(rows, (order or "-").startswith("-"))
    assert sizes == ([10, 10, 5] if limit == 10 else [5, 5, 5, 5, 5])


@pytest.mark.parametrize("order", ORDERS)
def test_collection_pages_return_every_row_once_in_order(db: Db, order: str) -> None:
    stmt = select(Collection).where(
        Collection.org_id == db.bulk_org,
        Collection.kind == "portfolio",
        Collection.name != "bulk",
    )
    items, sizes = _all_pages(db, stmt, "collection", order, 10)
    field = order.lstrip("-")
    with Session(db.engine) as session:
        rows = [
            (_key(c.name_key if field == "name" else getattr(c, field)), c.id)
            for c in session.scalars(stmt)
        ]
    assert len(rows) == BULK
    assert [c.id for (c,) in items] == _expected(rows, order.startswith("-"))
    assert sizes == [10, 10, 5]


@pytest.mark.parametrize("order", [*ORDERS, "version", "-version"])
def test_version_pages_return_every_row_once_in_order(db: Db, order: str) -> None:
    stmt = _versions_base().where(Collection.id == db.bulk_collection)
    items, sizes = _all_pages(db, stmt, "version", order, 10)
    field = order.lstrip("-")

    def key(m: Membership, v: Version, c: Collection) -> Any:
        if field == "version":
            return m.version_index
        if field == "name":
            return c.name_key
        return _key(getattr(v, field))

    with Session(db.engine) as session:
        rows = [(key(m, v, c), m.id) for m, v, c, _r in session.execute(stmt)]
    assert len(rows) == BULK
    assert [m.id for m, _v, _c, _r in items] == _expected(rows, order.startswith("-"))
    assert sizes == [10, 10, 5]


def test_a_filtered_listing_pages_by_version(db: Db) -> None:
    node = parse_filter({"metadata.step": {"$gte": 5}, "version": {"$lt": "v20"}}, "version")
    stmt = _versions_base().where(Collection.id == db.bulk_collection, version_where(node))
    items, sizes = _all_pages(db, stmt, "version", "-version", 4)
    indices = [m.version_index for m, _v, _c, _r in items]
    expected = sorted(((i * 7) % BULK for i in range(5, BULK) if (i * 7) % BULK < 20), reverse=True)
    assert indices == expected
    assert all(v.metadata_["step"] >= 5 for _m, v, _c, _r in items)
    assert sum(sizes) == len(expected)


def test_an_empty_listing_has_one_empty_page(db: Db) -> None:
    stmt = select(Registry).where(Registry.org_id == -1)
    items, sizes = _all_pages(db, stmt, "registry", "name", 10)
    assert items == [] and sizes == [0]


def test_a_cursor_only_fits_its_own_listing(db: Db) -> None:
    stmt = select(Registry).where(Registry.org_id == db.bulk_org)
    with Session(db.engine) as session:
        query = paginate(stmt, entity="registry", order="name", limit=3)
        cursor = query.read(session.execute(query.stmt)).next_cursor
    assert cursor is not None
    paginate(stmt, entity="registry", order="name", cursor=cursor)  # fits
    with pytest.raises(InvalidFilter, match="ordered by 'name', not to a registry listing"):
        paginate(stmt, entity="registry", order="-name", cursor=cursor)
    with pytest.raises(InvalidFilter, match="belongs to a registry listing"):
        paginate(stmt, entity="collection", order="name", cursor=cursor)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-2],
        lambda c: c[:10] + ("A" if c[10] != "A" else "B") + c[11:],
        lambda c: "not a cursor!",
        lambda c: "",
        lambda c: base64.urlsafe_b64encode(b'{"e":"registry"}').decode(),
        lambda c: base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(c + "==").replace(b'"k":"', b'"k":"z')
        ).decode(),
    ],
)
def test_a_tampered_cursor_is_refused(mangle: Any) -> None:
    cursor = next_cursor("item-03", 7, entity="registry", order="name")
    with pytest.raises(InvalidFilter, match="invalid cursor"):
        paginate(select(Registry), entity="registry", order="name", cursor=mangle(cursor))


def test_cursors_round_trip_every_key_type() -> None:
    for order, key in (("-created_at", t(5)), ("version", 3), ("name", "abc")):
        cursor = next_cursor(key, 9, entity="version", order=order)
        paginate(_versions_base(), entity="version", order=order, cursor=cursor)
    with pytest.raises(InvalidFilter, match="invalid cursor"):
        wrong_type = next_cursor("abc", 9, entity="version", order="version")
        paginate(_versions_base(), entity="version", order="version", cursor=wrong_type)


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
def test_limits_are_checked(limit: Any) -> None:
    with pytest.raises(InvalidFilter, match="limit must be between 1 and 1000"):
        paginate(select(Registry), entity="registry", limit=limit)


def test_unknown_order_is_refused() -> None:
    with pytest.raises(InvalidFilter, match="cannot order collection results by 'size'"):
        paginate(select(Collection), entity="collection", order="size")
