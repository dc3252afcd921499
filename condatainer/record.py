"""`Record`: the small immutable data class of the hot paths, at no import cost.

`dataclasses` costs an exec of every container run about 5 ms before the first class exists
(it imports `inspect`) and a fraction of a millisecond for each class it builds; the exec path
builds a dozen.  A Record gives what those classes used: fields from the class annotations,
defaults from the class body, keyword or positional construction, immutability, equality,
hashing, a readable repr, `replace(**changes)` and `as_dict()`.  Type checkers read a subclass
as a frozen dataclass (`dataclass_transform`), so construction is checked like one.

Defaults must be immutable values (use tuples, not lists); there is no `field()`.  A field
named in `_unequal` is left out of equality and hashing (a dataclass `compare=False`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self, dataclass_transform
else:

    def dataclass_transform(**_: object) -> Any:
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class Record:
    """Base class: subclasses declare annotated fields, optionally with defaults."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _unequal: ClassVar[frozenset[str]] = frozenset()
    _compared: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name, kind in vars(klass).get("__annotations__", {}).items():
                if not str(kind).startswith(("ClassVar", "typing.ClassVar")) and name not in names:
                    names.append(name)
        cls._fields = tuple(names)
        cls._compared = tuple(n for n in names if n not in cls._unequal)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__}: too many arguments")
        for name, value in zip(self._fields, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}: {name} given twice")
            object.__setattr__(self, name, value)
        for name in self._fields[len(args) :]:
            if name in kwargs:
                object.__setattr__(self, name, kwargs.pop(name))
            elif name not in type(self).__dict__ and not _inherited_default(type(self), name):
                raise TypeError(f"{type(self).__name__}: missing {name}")
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown {', '.join(sorted(kwargs))}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (use replace)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self._compared)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({shown})"

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied (the type is the receiver's)."""
        values = {n: getattr(self, n) for n in self._fields}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown {', '.join(sorted(unknown))}")
        values.update(changes)
        return type(self)(**values)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, Records and tuples of Records inside as dicts and lists."""
        return {n: _plain(getattr(self, n)) for n in self._fields}


def _inherited_default(cls: type, name: str) -> bool:
    return any(name in vars(klass) for klass in cls.__mro__[1:] if klass is not Record)


def _plain(value: object) -> object:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
