"""Write side of the membership service: the Organization aggregate and its application."""

from membership.application import Organizations, Receipt
from membership.inputs import Actor
from membership.organization import Organization

__all__ = ["Actor", "Organization", "Organizations", "Receipt"]
