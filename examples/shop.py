"""A shop: a per-session cart and a shared stock per product, changed together in
one event, with who is looking at each product right now.

Run:  python examples/shop.py   (serves http://127.0.0.1:5010)

Several workers share carts and stock through Redis:
  FASTSTATE_SECRET_KEY=change-me FASTSTATE_REDIS_URL=redis://127.0.0.1:6379/0 \
    uvicorn --app-dir examples shop:app --workers 4

``Cart.add`` takes the product's stock as a parameter (``product: Product``):
both instances are locked, changed and saved together, or neither is, and the
answer patches both.  Every page showing the product sees its stock go down,
and the product page says how many people are looking at it (presence).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from fasthtml.common import (
    H2,
    A,
    Article,
    Button,
    Div,
    FastHTML,
    Li,
    Main,
    Nav,
    P,
    Small,
    Span,
    Style,
    Title,
    Ul,
)
from pydantic import computed_field
from sqlmodel import Field
from starlette.responses import RedirectResponse

from faststate import (
    FastStateMiddleware,
    Invalid,
    ReactiveState,
    RedisStore,
    StateScope,
    error,
    event,
    live,
    on,
    register_state,
    text,
    use_state,
    viewer_count,
)
from faststate.fasthtml import datastar_script

Sku = Literal["tea", "mug", "pot"]
PRODUCTS: dict[str, tuple[str, str]] = {
    "tea": ("Sencha tea, 100 g", "A grassy green tea from Shizuoka."),
    "mug": ("Stoneware mug", "Hand-glazed, holds 300 ml."),
    "pot": ("Cast-iron teapot", "Keeps four cups warm for an hour."),
}
STOCK = 5

#: The stylesheet all the examples share.
STYLE = Path(__file__).with_name("style.css").read_text()


class Product(ReactiveState):
    """One product's stock, shared by every shopper (RECORD scope: /products/{id})."""

    stock: int = STOCK


class Cart(ReactiveState):
    """What this session is buying."""

    items: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def count(self) -> int:
        return sum(self.items.values())

    @event
    def add(self, record_id: Sku, product: Product) -> Any:
        # ``product`` is the instance of the record_id this request names:
        # locked together with the cart, so two shoppers never get the last one.
        if product.stock < 1:
            raise Invalid("Sorry, that one has just sold out.")
        product.stock -= 1
        self.items[record_id] = self.items.get(record_id, 0) + 1
        return cart_panel(self)

    @event
    def remove(self, record_id: Sku, product: Product) -> Any:
        if self.items.get(record_id, 0) < 1:
            raise Invalid("That is not in your cart any more.")
        self.items[record_id] -= 1
        if not self.items[record_id]:
            del self.items[record_id]
        product.stock += 1
        return cart_panel(self)


def cart_panel(cart: Cart) -> Any:
    """The cart, re-rendered by the page whenever its count changes."""
    rows = [
        Li(
            f"{PRODUCTS[sku][0]}, {quantity} ",
            Button(
                "remove one",
                **on("click", cart.remove, record_id=sku),
                cls="quiet small",
                id=f"remove-{sku}",
            ),
        )
        for sku, quantity in sorted(cart.items.items())
    ]
    return Article(
        H2("Your cart (", Span(**text(cart, "count"), id="cart-count"), ")"),
        Ul(*rows, cls="cart", id="cart-items") if rows else P("Empty.", cls="muted"),
        Small(**error(cart), cls="error", id="cart-error"),
        id="cart",
    )


def page(title: str, *content: Any) -> Any:
    return (
        Title(title),
        Main(Nav(A("All products", href="/"), A("Your cart", href="/cart")), *content),
    )


def create_app(protocol: str = "v1", redis_url: str | None = None) -> FastHTML:
    app = FastHTML(
        hdrs=(datastar_script(protocol=protocol), Style(STYLE)),
        htmx=False,
        surreal=False,
        pico=False,
        secret_key=os.environ.get("FASTSTATE_SECRET_KEY", "shop-example"),
    )
    app.add_middleware(
        FastStateMiddleware, protocol=protocol, store=RedisStore(redis_url) if redis_url else None
    )
    register_state(app, Cart, scope=StateScope.SESSION)
    register_state(
        app,
        Product,
        scope=StateScope.RECORD,
        presence=True,
        authorize=lambda request, key: key in PRODUCTS,  # no stock for made-up ids
    )

    @app.route("/")
    def index(req):  # type: ignore[no-untyped-def]
        cart = use_state(req, Cart)
        listing = [
            Li(A(name, href=f"/products/{sku}", id=f"link-{sku}"), " ", Small(blurb, cls="muted"))
            for sku, (name, blurb) in PRODUCTS.items()
        ]
        return page(
            "Shop",
            H2("Products"),
            Ul(*listing, cls="products"),
            cart,
            cart_panel(cart),
            Div(**live(req), id="live"),
        )

    @app.route("/cart")
    def cart_page(req):  # type: ignore[no-untyped-def]
        cart = use_state(req, Cart)
        return page("Your cart", cart, cart_panel(cart), Div(**live(req), id="live"))

    @app.route("/products/{record_id}")
    def product_page(req, record_id: str):  # type: ignore[no-untyped-def]
        if record_id not in PRODUCTS:
            return RedirectResponse("/", status_code=303)
        cart, product = use_state(req, Cart), use_state(req, Product)
        name, blurb = PRODUCTS[record_id]
        return page(
            name,
            cart,
            product,
            Article(
                H2(name),
                P(blurb),
                P(Span(**text(product, "stock"), id="stock", cls="badge"), " left in stock"),
                P(
                    Span(**viewer_count(product), id="viewers", cls="badge live"),
                    " people looking at this now",
                    cls="muted",
                ),
                Button("Add to cart", **on("click", cart.add, record_id=record_id), id="add"),
            ),
            cart_panel(cart),
            # The stock, the cart's count and who is looking follow along live.
            Div(**live(req), id="live"),
        )

    return app


app = create_app(redis_url=os.environ.get("FASTSTATE_REDIS_URL"))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=5010)
