// UniNote front-end helpers: annotation keyboard shortcuts and map hover/click.
// Loaded through launch(head=<script>...), so it runs once per page load.
(() => {
  if (window.__uninote) return;
  window.__uninote = true;
  const visible = (el) => !!el && el.offsetParent !== null;
  const keys = { "0": "grade-0", "1": "grade-1", "2": "grade-2", "3": "grade-3", "u": "undo-btn", "s": "skip-btn" };
  // A second grade key within GRADE_GAP_MS of the first is a double press: dropped, and said so
  // (the server refuses one that gets through: see annotations.queue.check_not_too_soon).
  const GRADE_GAP_MS = 600;
  let lastGrade = 0, noteTimer = null;
  const say = (text) => {
    let box = document.getElementById("un-keyguard");
    if (!box) {
      box = document.createElement("div"); box.id = "un-keyguard"; box.className = "un-keyguard";
      box.setAttribute("role", "status"); document.body.appendChild(box);
    }
    box.textContent = text; box.style.display = "block";
    clearTimeout(noteTimer); noteTimer = setTimeout(() => { box.style.display = "none"; }, 2500);
  };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) {
      if (e.key === "Escape" && t.closest && t.closest("#annotate-comment")) t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const id = keys[(e.key || "").toLowerCase()];
    if (!id) return;
    const btn = document.getElementById(id);
    if (!visible(btn)) return;
    e.preventDefault();
    if (id.startsWith("grade-")) {
      const now = e.timeStamp;  // when the key went down, even if the page was busy since
      if (now - lastGrade < GRADE_GAP_MS) { say(`Second key press ignored: one grade per ${GRADE_GAP_MS} ms`); return; }
      lastGrade = now;
    }
    if (!btn.disabled) btn.click();
  });

  let tip = null;
  const showTip = (ev) => {
    const p = ev.points && ev.points[0];
    if (!p || !p.customdata) return;
    if (!tip) { tip = document.createElement("div"); tip.className = "un-tip"; document.body.appendChild(tip); }
    const [id, url] = p.customdata;
    tip.innerHTML = (url ? `<img src="${url}" alt="">` : "") + `<div></div>`;
    tip.lastChild.textContent = `${p.text} (${id})`;
    const e = ev.event || {};
    tip.style.left = `${(e.clientX || 0) + 16}px`;
    tip.style.top = `${(e.clientY || 0) + 16}px`;
    tip.style.display = "block";
  };
  const hideTip = () => { if (tip) tip.style.display = "none"; };
  const openPoint = (ev) => {
    const p = ev.points && ev.points[0];
    if (!p || !p.customdata) return;
    const box = document.querySelector("#map-picked textarea, #map-picked input");
    if (!box) return;
    box.value = p.customdata[0];
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => { const b = document.getElementById("map-open"); if (b) b.click(); }, 80);
  };
  const hook = () => {
    const plot = document.querySelector("#umap-plot .js-plotly-plot");
    if (!plot || !plot.on || plot.__unLayout === plot._fullLayout) return;
    plot.__unLayout = plot._fullLayout;
    if (plot.removeAllListeners) { ["plotly_hover", "plotly_unhover", "plotly_click"].forEach((n) => plot.removeAllListeners(n)); }
    plot.on("plotly_hover", showTip);
    plot.on("plotly_unhover", hideTip);
    plot.on("plotly_click", openPoint);
  };
  const observe = () => new MutationObserver(hook).observe(document.body, { childList: true, subtree: true });
  if (document.body) observe(); else document.addEventListener("DOMContentLoaded", observe);
})();
