"""Explore: one image, one attack, every view, with a shareable URL and a session history."""

from typing import Any

import streamlit as st

from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.recipes import Recipe
from percviz.workflows.explore import plan_attack, recipe_key
from ui import jobs, results, teach, urlstate, views
from ui.common import image_input, page_setup
from ui.models import model_choice_with_own, other_models_top5
from ui.params import apply_values, ensure_state, form_keys, param_widgets, recall, remember
from ui.presets import preset_buttons

P = "ex"
page_setup(
    "Explore", "One image, one attack, every view: tune the budget, run, and inspect what changed and why."
)

attacks = registry("classification")
KEPT = [f"{P}_model", f"{P}_image_source", f"{P}_image_sample", f"{P}_image_crop", f"{P}_attack"]
results.keep_widgets(P, KEPT)  # a page switch must not reset the setup
url_params = urlstate.load_once(P)
request = st.session_state.pop("pv_explore_request", None)  # from Learn's "Try it"
if request and request.get("attack") in attacks:
    st.session_state[f"{P}_attack"] = request["attack"]
elif st.session_state.get(f"{P}_attack") not in attacks:
    st.session_state[f"{P}_attack"] = "pgd" if "pgd" in attacks else next(iter(attacks))


def show_recipe(entry: results.Entry) -> None:
    """Put ``entry``'s recipe into the form (a pick from history): what is shown is what is set."""
    r = entry.recipe
    spec = attacks.get(r.attack)
    if spec is None:
        return
    st.session_state[f"{P}_attack"] = r.attack
    st.session_state[f"{P}_seed"] = int(r.seed)
    if r.image.sample is not None:
        st.session_state[f"{P}_image_source"] = "Bundled photo"
        st.session_state[f"{P}_image_sample"] = r.image.sample
    st.session_state[f"{P}_image_crop"] = float(r.crop_fraction)
    st.session_state[f"{P}_model"] = r.model
    apply_values(P, spec, r.params)
    remember(P, [*KEPT, f"{P}_seed"])


def lesson_step(prefix: str, attack: str, params: dict) -> None:
    """A lesson button: the cat photo, that step's attack and settings, and run."""
    st.session_state[f"{P}_image_source"] = "Bundled photo"
    st.session_state[f"{P}_image_sample"] = "chelsea"
    st.session_state[f"{P}_image_crop"] = 1.0
    st.session_state[f"{P}_attack"] = attack
    apply_values(P, attacks[attack], params)
    remember(P, KEPT)
    results.request_run(P)


def pick_history() -> None:
    key: str | None = st.session_state.get(f"{P}_history")
    entry = results.stored(P).get(key) if key is not None else None
    if key is not None and entry is not None and results.select(P, key):
        show_recipe(entry)


with st.sidebar:
    teaching = st.toggle(
        "Teaching view",
        key=f"{P}_teach",
        help="Large images, the verdict, one sentence and the formula; expert controls folded away.",
    )
    st.header("Setup")
    model = model_choice_with_own(f"{P}_model")
    picked = image_input(model.input_size if model else 224, f"{P}_image") if model else None
    attack_id = st.selectbox(
        "Attack",
        list(attacks),  # the choice lives in session state (set above, by links, presets and history)
        format_func=lambda a: f"{attacks[a].title} · {attacks[a].family}",
        key=f"{P}_attack",
    )
    remember(P, KEPT)
    spec = attacks[attack_id]
    keys = [*form_keys(P, spec), f"{P}_seed"]
    ignored: list[str] = []
    if request and request.get("attack") == attack_id:
        apply_values(P, spec, request.get("params", {}))
        if request.get("run"):
            results.request_run(P)
    elif url_params is not None:
        ignored = apply_values(P, spec, url_params)
        remember(P, [f"{P}_seed"])
    steps_key = f"{P}_{spec.id}_steps"
    no_live = teach.live_reason(spec, {"steps": st.session_state.get(steps_key)})
    live = (
        st.toggle(
            "Live",
            key=f"{P}_live",
            disabled=no_live is not None,
            help=no_live
            or "Re-runs as you move a control (the previous run is cancelled); the views update in place.",
        )
        and no_live is None
    )
    if not live:  # the form shows what was last submitted, preset or loaded — never a stale widget
        recall(P, keys)
    ensure_state(P, spec)
    st.session_state.setdefault(f"{P}_seed", 0)
    remember(P, keys)
    if teaching:
        teach.lesson_buttons(P, lesson_step)
    box = st.container(border=True) if live else st.form(f"{P}_form", border=True)
    with box:
        submitted = live or st.form_submit_button(
            "Run attack",
            type="primary",
            width="stretch",
            icon=":material/bolt:",
            on_click=remember,
            args=(P, keys),
        )
        with st.expander("Expert controls", expanded=False) if teaching else st.container():
            raw = param_widgets(P, spec)
            seed = st.number_input(
                "Seed",
                0,
                2**31 - 1,
                int(st.session_state[f"{P}_seed"]),
                key=f"{P}_seed",
                help="Seeds the attack's own randomness.",
            )
    if live:
        remember(P, keys)
    st.caption(f"{spec.source}. Bound: {spec.bound or '—'}")
    preset_buttons(P, spec, on_pick=results.request_run)

if ignored:
    st.warning(
        "The link had values this attack cannot use (defaults shown instead): " + "; ".join(ignored) + "."
    )
for note in urlstate.notes(P):
    st.info(note)

if model is None or picked is None:
    st.info("Choose a model and an image in the sidebar.")
    st.stop()
chosen_model, chosen_image = model, picked  # never None below (closures do not see the narrowing)

values: dict[str, Any] | None
try:
    values = plan_attack(spec, raw)
except PercvizError as exc:
    values = None
    st.error(str(exc))

recipe = Recipe(
    model=model.spec.id,
    image=picked.ref,
    attack=attack_id,
    params=values or {},
    seed=int(seed),
    crop_fraction=picked.crop,
)
key = recipe_key(recipe)


def _share(shown: results.Entry | None) -> None:
    """The URL names these settings (``run=1`` once ``shown`` is their result)."""
    if values is not None:
        urlstate.save(
            chosen_model.spec.id,
            chosen_image.ref,
            chosen_image.crop,
            spec,
            values,
            int(seed),
            shown,
            views.chosen(P),
        )


_share(results.current(P))

run_now = results.take_run_request(P) or submitted
label = f"{spec.title} on {picked.name}"
if live and values is not None and not results.select(P, key):
    if jobs.pending_key(P) != key:  # a new setting: drop the running update, start this one
        jobs.replace(P, results.attack_work(model, picked, recipe, key), label, key=key)
elif run_now and values is not None and not results.select(P, key):
    jobs.submit(P, results.attack_work(model, picked, recipe, key), label, key=key)


def _stored(entry: results.Entry, meta: dict) -> str | None:
    results.store(P, entry)
    if entry.result.cancelled:
        return (
            f"Cancelled after {len(entry.result.history)} iterations: showing that run's last iterate "
            "(marked cancelled)."
        )
    return None


# Live mode with a result on screen: redraw that result first and follow the update in a slot above
# it, then rerun once to show the new one in place (nothing on the page waits faded for the update).
deferred = live and jobs.running(P) and results.current(P) is not None
update_slot = st.container()  # progress and notices always live here: the page's layout never shifts
if not deferred:
    with update_slot:
        jobs.follow(P, _stored)
entry = results.current(P)
_share(entry)


def _end() -> None:
    """Follow a deferred live update to its end (then show it), and record the render time."""
    if deferred:
        shown = results.current_key(P)
        with update_slot:
            jobs.follow(P, _stored)
        if results.current_key(P) != shown:
            st.rerun()
    results.done()


if entry is None:
    results.preview(model, picked, spec, P)
    st.stop()

history = results.stored(P)
if len(history) > 1:
    order = list(history)[::-1]  # newest first
    st.session_state[f"{P}_history"] = entry.key  # the picker always shows what is on screen
    st.selectbox(
        "Result",
        order,
        format_func=lambda k: results.entry_label(history[k]),
        key=f"{P}_history",
        on_change=pick_history,
        help="Every result of this session is kept (newest first); pick one to show it again — "
        "nothing recomputes, and the form shows its settings.",
    )
if recipe_key(entry.recipe) != key and not entry.result.cancelled and not deferred:
    st.caption(
        "Showing the last result; the settings in the sidebar differ — press **Run attack** to compute them."
    )

if live:
    st.caption(
        f"Live: this update took {entry.seconds:.2f} s (attack {entry.result.wall_time:.2f} s)"
        + (" — showing it until the new settings' result is ready." if deferred else ".")
    )
if teaching:
    verdict, ok = results.verdict_text(entry)
    teach.teaching(entry, attacks[entry.recipe.attack], verdict, ok)
    _end()
    st.stop()
results.headline(entry, attacks[entry.recipe.attack].title)
st.subheader("Views")
views.render(entry, P)
other_models_top5(entry, model, P)
results.details(entry)
st.subheader("Downloads")
results.downloads(entry, attacks[entry.recipe.attack].title)
_end()
