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
