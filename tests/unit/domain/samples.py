"""Sample schema types shared by the domain tests."""

from domain.schema import Cardinality, EdgeType, NodeType, OnDelete, PropertyDef
from domain.values import PropertyKind

USER = NodeType(
    "User",
    (
        PropertyDef("name", PropertyKind.STRING, required=True),
        PropertyDef("email", PropertyKind.STRING, unique=True),
        PropertyDef("age", PropertyKind.INT, indexed=True),
        PropertyDef("score", PropertyKind.DOUBLE),
        PropertyDef("active", PropertyKind.BOOL),
        PropertyDef("born", PropertyKind.TIMESTAMP),
    ),
    projected=("name",),
)
GROUP = NodeType("Group", (PropertyDef("title", PropertyKind.STRING),))
FOLLOWS = EdgeType("follows", "User", "User", properties=(PropertyDef("since", PropertyKind.TIMESTAMP),))
MEMBER_OF = EdgeType("member_of", "User", "Group", cardinality=Cardinality.MANY_TO_ONE, on_delete=OnDelete.CASCADE)
MANAGES = EdgeType("manages", "User", "User", acyclic=True)
FRIEND = EdgeType("friend", "User", "User", symmetric=True)
