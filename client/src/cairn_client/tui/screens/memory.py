"""The memory screen: the agent's core blocks, one open in an editor, saved with a version check.

Owns listing, editing, creating and deleting blocks; a save refused because the block changed
meanwhile keeps the person's text, and unsaved text survives switching blocks and closing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cairn_protocol.rest import BlockPublic
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList, TextArea
from textual.widgets.option_list import Option

from cairn_client.api import ApiError, CairnApi
from cairn_client.memory_format import redacted_note
from cairn_client.tui.screens.memory_dialogs import (
    BlockHistoryScreen,
    ConfirmScreen,
    NewBlockScreen,
)


@dataclass
class Draft:
    """Text typed into a block and not saved yet; `base` is the version it will replace.

    `conflict` is set once the person was told the block changed meanwhile: `base` then
    moves to the newer version, so saving again knowingly replaces it. `block` is the block
    as last seen, to recreate it if it is deleted meanwhile.
    """

    text: str
    base: int
    block: BlockPublic
    conflict: bool = False


Drafts = dict[str, Draft]


class MemoryScreen(Screen[None]):
    """Blocks on the left, the selected one on the right; every server call in a worker."""

    CSS_PATH = "memory.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="memory.close"),
        Binding("ctrl+s", "save", "Save", id="memory.save"),
        Binding("ctrl+n", "new_block", "New block", id="memory.new"),
        Binding("f8", "delete_block", "Delete", id="memory.delete"),
        Binding("f4", "history", "History", id="memory.history"),
        Binding("ctrl+r", "discard", "Discard edits", id="memory.discard"),
        Binding("f5", "reload", "Reload", id="memory.reload"),
    ]

    def __init__(self, api: CairnApi, agent_id: str, drafts: Drafts | None = None) -> None:
        super().__init__()
        self.api = api
        self.agent_id = agent_id
        # Owned by the app when given, so unsaved text is still there when the screen reopens.
        self.drafts: Drafts = drafts if drafts is not None else {}
        self.blocks: dict[str, BlockPublic] = {}
        self.deleted: set[str] = set()  # shown only because they hold a draft
        self.selected: str | None = None
        self.saving: set[str] = set()

    def compose(self) -> ComposeResult:
        with Horizontal(id="memory-main"):
            with Vertical(id="memory-side"):
                yield Label("Memory blocks", id="memory-heading")
                yield OptionList(id="memory-blocks")
            with Vertical(id="memory-detail"):
                yield Label("Loading…", id="memory-title", markup=False)
                yield Label("", id="memory-description", markup=False)
                yield TextArea(id="memory-editor", soft_wrap=True, read_only=True)
                yield Label("", id="memory-state", markup=False)
        yield Footer()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#memory-editor", TextArea)

    @property
    def block_list(self) -> OptionList:
        return self.query_one("#memory-blocks", OptionList)

    def on_mount(self) -> None:
        self.block_list.focus()
        self.reload()

    # ------------------------------------------------------------------ loading and showing

    @work(group="memory-load", exclusive=True, exit_on_error=False)
    async def reload(self, select: str | None = None) -> None:
        try:
            blocks = await self.api.list_blocks(self.agent_id)
        except ApiError as exc:
            self.query_one("#memory-title", Label).update("Could not load memory")
            self.notify(exc.detail, title="Could not load memory", severity="error")
            return
        self._set_blocks(blocks, select)

    def _set_blocks(self, blocks: list[BlockPublic], select: str | None) -> None:
        self._remember()
        listed = {block.label: block for block in blocks}
        # A block deleted elsewhere while the person edited it stays, to be recreated.
        self.deleted = {label for label in self.drafts if label not in listed}
        for label in self.deleted:
            listed[label] = self.drafts[label].block
        self.blocks = listed
        options = [Option(self._option_prompt(block), id=block.label) for block in listed.values()]
        self.block_list.set_options(options)
        target = select or self.selected
        if target not in listed:
            target = next(iter(listed), None)
        if target is None:
            self.selected = None
            self._show_nothing()
            return
        if target == self.selected:
            # Reloaded under the person's cursor: only a saved value that changed replaces it.
            value = listed[target].value
            if target not in self.drafts and self.editor.text != value:
                self.editor.load_text(value)
            self._show_details()
        else:
            self.selected = None  # its text was remembered above, against the old block
            self._open(target)
        self.block_list.highlighted = self.block_list.get_option_index(target)

    def _option_prompt(self, block: BlockPublic) -> Content:
        label = block.label + (" *" if block.label in self.drafts else "")
        details = f"{block.chars:,}/{block.char_limit:,} · v{block.version}"
        if block.read_only:
            details += " · read-only"
        if block.label in self.deleted:
            details = "deleted meanwhile"
        return Content.assemble((label, "bold"), "\n", (details, "dim"))

    def _refresh_option(self, label: str) -> None:
        if label in self.blocks:
            self.block_list.replace_option_prompt(label, self._option_prompt(self.blocks[label]))

    def _open(self, label: str) -> None:
        """Show a block in the editor: its draft if there is one, else its saved value."""
        if label == self.selected:
            return
        self._remember()
        self.selected = label
        block = self.blocks[label]
        draft = self.drafts.get(label)
        self.editor.read_only = False
        self.editor.load_text(draft.text if draft is not None else block.value)
        self._show_details()

    def _show_nothing(self) -> None:
        self.query_one("#memory-title", Label).update("No memory blocks (ctrl+n creates one)")
        self.query_one("#memory-description", Label).update("")
        self.editor.load_text("")
        self.editor.read_only = True
        self._show_state()

    def _show_details(self) -> None:
        block = self.blocks[self.selected] if self.selected is not None else None
        if block is None:
            return
        title = f"{block.label} · v{block.version}"
        if block.read_only:
            title += " · read-only (the agent cannot edit it; you can)"
        self.query_one("#memory-title", Label).update(title)
        description = block.description or "(no description)"
        self.query_one("#memory-description", Label).update(description)
        self._show_state()

    def _show_state(self) -> None:
        state = self.query_one("#memory-state", Label)
        label = self.selected
        if label is None:
            state.update("")
            return
        block = self.blocks[label]
        draft = self.drafts.get(label)
        chars = len(draft.text) if draft is not None else block.chars
        over = chars - block.char_limit
        size = f"{chars:,}/{block.char_limit:,} chars"
        if over > 0:
            size += f" — {over:,} over the limit"
        state.set_class(over > 0, "-over")
        if draft is None:
            state.update(f"{size} · saved")
        elif label in self.deleted:
            state.update(f"{size} · deleted meanwhile — ctrl+s recreates it with your text")
        elif draft.conflict or draft.base != block.version:
            state.update(
                f"{size} · changed meanwhile (now v{block.version}) — ctrl+s saves your text "
                "over it, ctrl+r takes the saved one"
            )
        else:
            state.update(f"{size} · unsaved — ctrl+s saves")

    # ------------------------------------------------------------------ drafts

    def _remember(self) -> None:
        """Record the editor's text as the selected block's draft, or drop a draft it matches."""
        label = self.selected
        if label is None or label not in self.blocks:
            return
        block, text = self.blocks[label], self.editor.text
        draft = self.drafts.get(label)
        had_draft = draft is not None
        if text == block.value and label not in self.deleted:
            self.drafts.pop(label, None)
        elif draft is None:
            self.drafts[label] = Draft(text, block.version, block)
        else:
            draft.text = text
        if had_draft != (label in self.drafts):
            self._refresh_option(label)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self._remember()
        self._show_state()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None and event.option.id in self.blocks:
            self._open(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.editor.focus()

    # ------------------------------------------------------------------ saving

    def action_save(self) -> None:
        label = self.selected
        if label is None:
            return
        self._remember()
        draft = self.drafts.get(label)
        if draft is None:
            self.notify(f"{label}: nothing to save")
            return
        if label in self.saving:  # a second save would look stale against our own first one
            return
        self.saving.add(label)
        self._save(label, draft.text, draft.base)

    @work(group="memory-save", exit_on_error=False)
    async def _save(self, label: str, text: str, base: int) -> None:
        try:
            await self._write(label, text, base)
        finally:
            self.saving.discard(label)

    async def _write(self, label: str, text: str, base: int) -> None:
        block = self.blocks[label]
        try:
            if label in self.deleted:
                saved = await self.api.create_block(
                    self.agent_id,
                    label,
                    value=text,
                    description=block.description,
                    char_limit=block.char_limit,
                    read_only=block.read_only,
                )
            else:
                saved = await self.api.update_block(
                    self.agent_id, label, value=text, expected_version=base
                )
        except ApiError as exc:
            if exc.conflict and label not in self.deleted:
                await self._changed_meanwhile(label)
            elif exc.not_found:
                self._deleted_meanwhile(label)
            else:
                self.notify(exc.detail, title=f"Could not save {label}", severity="error")
            return
        self._saved(label, text, saved)

    def _saved(self, label: str, text: str, saved: BlockPublic) -> None:
        self.blocks[label] = saved
        self.deleted.discard(label)
        draft = self.drafts.get(label)
        if draft is not None and draft.text == text:
            del self.drafts[label]
        elif draft is not None:  # typed on while it was saving: the rest is still unsaved
            draft.base, draft.block, draft.conflict = saved.version, saved, False
        if label == self.selected and label not in self.drafts and self.editor.text != saved.value:
            self.editor.load_text(saved.value)  # the server stored it with secrets cut
        self._refresh_option(label)
        if label == self.selected:
            self._show_details()
        if saved.secrets_redacted:
            note = redacted_note(saved)
            self.notify(f"Saved {label} · v{saved.version} · {note}", severity="warning")
        else:
            self.notify(f"Saved {label} · v{saved.version}")

    async def _changed_meanwhile(self, label: str) -> None:
        try:
            fresh = await self.api.get_block(self.agent_id, label)
        except ApiError as exc:
            if exc.not_found:
                self._deleted_meanwhile(label)
            else:
                self.notify(exc.detail, title=f"Could not reload {label}", severity="error")
            return
        self.blocks[label] = fresh
        draft = self.drafts.get(label)
        if draft is not None:
            draft.base, draft.block, draft.conflict = fresh.version, fresh, True
        self._refresh_option(label)
        if label == self.selected:
            self._show_details()
        self.notify(
            f"{label} changed meanwhile (now v{fresh.version}). Your text is kept: ctrl+s saves "
            "it over the new version, ctrl+r takes the new version (f4 shows what changed).",
            title="Not saved",
            severity="warning",
            timeout=10,
        )

    def _deleted_meanwhile(self, label: str) -> None:
        self.deleted.add(label)
        self._refresh_option(label)
        if label == self.selected:
            self._show_state()
        self.notify(
            f"{label} was deleted meanwhile. Your text is kept: ctrl+s recreates it.",
            title="Not saved",
            severity="warning",
            timeout=10,
        )

    # ------------------------------------------------------------------ other actions

    def action_discard(self) -> None:
        label = self.selected
        if label is None:
            return
        self._remember()
        if label not in self.drafts:
            self.notify(f"{label}: no unsaved changes")
            return

        def confirmed(yes: bool | None) -> None:
            if yes and label in self.blocks:
                self.drafts.pop(label, None)
                self.deleted.discard(label)
                if label == self.selected:
                    self.editor.load_text(self.blocks[label].value)
                self.reload(select=label)

        self.app.push_screen(
            ConfirmScreen(f"Discard your unsaved changes to {label}?", "They cannot be undone."),
            callback=confirmed,
        )

    def action_new_block(self) -> None:
        def created(block: BlockPublic | None) -> None:
            if block is not None:
                self.notify(f"Created {block.label}")
                self.reload(select=block.label)

        self.app.push_screen(NewBlockScreen(self.api, self.agent_id), callback=created)

    def action_delete_block(self) -> None:
        label = self.selected
        if label is None or label in self.deleted:
            return
        version = self.blocks[label].version

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(label, version)

        self.app.push_screen(
            ConfirmScreen(
                f"Delete the memory block {label}?",
                f"Its history is kept: `cairn memory revert {label} {version}` brings it back.",
            ),
            callback=confirmed,
        )

    @work(group="memory-save", exit_on_error=False)
    async def _delete(self, label: str, version: int) -> None:
        try:
            await self.api.delete_block(self.agent_id, label)
        except ApiError as exc:
            self.notify(exc.detail, title=f"Could not delete {label}", severity="error")
            return
        self.drafts.pop(label, None)
        if self.selected == label:
            self.selected = None
        self.notify(f"Deleted {label} (v{version} stays in its history)")
        self.reload()

    def action_history(self) -> None:
        label = self.selected
        if label is None:
            return

        def closed(reverted: BlockPublic | None) -> None:
            if reverted is not None:
                self.notify(f"Reverted {label}: now v{reverted.version}")
                self.reload(select=label)

        self.app.push_screen(BlockHistoryScreen(self.api, self.agent_id, label), callback=closed)

    def action_reload(self) -> None:
        self.reload()

    def action_close(self) -> None:
        self._remember()
        unsaved = sorted(self.drafts)
        if unsaved:
            self.notify(
                f"Unsaved changes kept for {', '.join(unsaved)} (f2 comes back to them).",
                severity="warning",
            )
        self.dismiss(None)
