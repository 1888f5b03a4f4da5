"""Write side of the membership service: the Organization aggregate and its application."""

from membership.application import Organizations, Receipt
from membership.domain import Actor, Organization

__all__ = ["Actor", "Organization", "Organizations", "Receipt"]
