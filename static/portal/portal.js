// Small progressive enhancements; every page works without JavaScript.
document.addEventListener("change", (event) => {
  const select = event.target.closest("[data-autosubmit]");
  if (select) select.form.requestSubmit();
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
// The agents list's "select all" box checks or clears every agent box of its form.
document.addEventListener("change", (event) => {
  const all = event.target.closest("[data-select-all]");
  if (!all) return;
  all.form.querySelectorAll('input[type="checkbox"][name="agent"]').forEach((box) => { box.checked = all.checked; });
});
// The set-up wizard shows "Run as user account" only for that identity (and "Create an agent user" only for a new
// agent identity); without JavaScript the step shows it after Continue.
document.addEventListener("change", (event) => {
  if (event.target.name !== "identity_type") return;
  event.target.form.querySelectorAll("[data-show-for]").forEach((block) => {
    block.hidden = block.dataset.showFor !== event.target.value;
  });
});
// Pickers (portal/pickers.py): htmx fills a field's <datalist> with the people or agents matching what was typed;
// here the field becomes a combobox whose list the arrow keys walk, Enter or a click chooses from and Escape closes.
// In a field of several names (data-multiple) the choice replaces only the name being typed.
function pickerChoose(input, value) {
  const separator = input.dataset.multiple;
  if (separator) {
    const names = input.value.split(/[;,]/).map((name) => name.trim());
    names[names.length - 1] = value;
    input.value = names.filter(Boolean).join(separator) + separator;
  } else {
    input.value = value;
  }
  pickerClose(input);
  input.focus();
}
function pickerClose(input) {
  const box = document.getElementById(input.getAttribute("aria-controls"));
  if (box) { box.hidden = true; box.replaceChildren(); }
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
}
function pickerMove(input, step) {
  const box = document.getElementById(input.getAttribute("aria-controls"));
  const options = [...box.querySelectorAll('[role="option"]')];
  if (!options.length) return;
  const current = options.findIndex((option) => option.getAttribute("aria-selected") === "true");
  const next = options[(current + step + options.length) % options.length];
  options.forEach((option) => option.setAttribute("aria-selected", option === next ? "true" : "false"));
  input.setAttribute("aria-activedescendant", next.id);
  next.scrollIntoView({ block: "nearest" });
}
function pickerSetup(input) {
  if (input.dataset.pickerReady) return;
  input.dataset.pickerReady = "1";
  const listId = input.getAttribute("list");
  input.removeAttribute("list");  // the combobox's own list replaces the browser's
  const box = document.createElement("ul");
  box.id = `${input.id}-listbox`;
  box.className = "picker-listbox list-group";
  box.setAttribute("role", "listbox");
  box.hidden = true;
  box.setAttribute("aria-label", "Suggestions");  // the field's own label names the combobox
  const wrapper = document.createElement("div");
  wrapper.className = "picker";
  input.before(wrapper);
  wrapper.append(input);
  const datalist = document.getElementById(listId);
  if (datalist) wrapper.append(datalist);
  wrapper.append(box);
  input.dataset.pickerList = listId;
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", box.id);
  input.addEventListener("keydown", (event) => {
    const open = !box.hidden;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (open) { event.preventDefault(); pickerMove(input, event.key === "ArrowDown" ? 1 : -1); }
    } else if (event.key === "Enter" && open) {
      const active = box.querySelector('[aria-selected="true"]') || (box.children.length === 1 && box.children[0]);
      if (active) { event.preventDefault(); pickerChoose(input, active.dataset.value); }
    } else if (event.key === "Escape" && open) {
      event.preventDefault();
      pickerClose(input);
    }
  });
  input.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== input) pickerClose(input); }, 150));
  box.addEventListener("mousedown", (event) => event.preventDefault());  // keep the focus in the field
  box.addEventListener("click", (event) => {
    const option = event.target.closest('[role="option"]');
    if (option) pickerChoose(input, option.dataset.value);
  });
}
function pickerFill(input, datalist) {
  const box = document.getElementById(input.getAttribute("aria-controls"));
  box.replaceChildren(...[...datalist.options].map((option, index) => {
    const item = document.createElement("li");
    item.id = `${box.id}-${index}`;
    item.className = "list-group-item list-group-item-action";
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", "false");
    item.dataset.value = option.value;
    item.textContent = option.textContent || option.value;
    return item;
  }));
  input.removeAttribute("aria-activedescendant");
  box.hidden = box.children.length === 0 || document.activeElement !== input;
  input.setAttribute("aria-expanded", box.hidden ? "false" : "true");
}
document.querySelectorAll("input[data-picker]").forEach(pickerSetup);
document.addEventListener("htmx:load", (event) => event.detail.elt.querySelectorAll?.("input[data-picker]").forEach(pickerSetup));
document.addEventListener("htmx:afterSwap", (event) => {
  const datalist = event.detail.target;
  if (datalist.tagName !== "DATALIST") return;
  const input = document.querySelector(`input[data-picker-list="${datalist.id}"]`);
  if (input) pickerFill(input, datalist);
});
