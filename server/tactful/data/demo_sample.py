"""A small inventory module: the sample file `tactful demo` completes and flags."""

import json
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int


def load_items(path):
    """Read items from a JSON file."""
    with open(path) as f:
        data = json.load(f)
    return [Item(**row) for row in data]


def total_value(items):
    """Return the total value of all items in stock."""
    total = 0
    for item in items:
        total += item.price * item.quantity
    return total


def cheapest(items):
    """Return the item with the lowest price."""
    best = items[0]
    for item in items[1:]:
        if item.price > best.price:
            best = item
    return best


def restock(items, threshold):
    """Return the names of the items that need restocking."""
    return [item.name for item in items if item.quantity < threshold]
