// cardtune studio: the editor's line marks follow the textarea's scroll; problems jump to their line; weights sync.
(function () {
  function sync(editor) {
    var ta = editor.querySelector("textarea"), marks = editor.querySelector(".marks");
    if (!ta || !marks) return;
    var g = marks.querySelector(".gutter"), o = marks.querySelector(".overlay");
    if (g) g.style.transform = "translateY(" + -ta.scrollTop + "px)";
    if (o) o.style.transform = "translate(" + -ta.scrollLeft + "px," + -ta.scrollTop + "px)";
  }
  function all() { document.querySelectorAll(".editor").forEach(sync); }
  document.addEventListener("scroll", function (e) {
    if (e.target && e.target.tagName === "TEXTAREA") { var ed = e.target.closest(".editor"); if (ed) sync(ed); }
  }, true);
  document.addEventListener("htmx:afterSettle", all);
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("keydown", function (e) {  // Tab inserts two spaces in the editor
    if (e.key === "Tab" && e.target.tagName === "TEXTAREA" && !e.target.readOnly) {
      e.preventDefault(); document.execCommand("insertText", false, "  ");
    }
  });
  document.addEventListener("click", function (e) {
    var li = e.target.closest && e.target.closest("[data-line]");
    if (!li) return;
    var line = parseInt(li.getAttribute("data-line"), 10), ta = document.querySelector(".editor textarea");
    if (!ta || !line) return;
    var lines = ta.value.split("\n"), pos = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    ta.focus(); ta.setSelectionRange(pos, pos + (lines[line - 1] || "").length);
    ta.scrollTop = Math.max(0, (line - 5) * 18); sync(ta.closest(".editor"));
  });
  document.addEventListener("htmx:beforeRequest", function (e) {  // the opened reject row stays marked
    var row = e.target.closest && e.target.closest("tr.pick");
    if (!row) return;
    row.parentNode.querySelectorAll("tr.pick.on").forEach(function (r) { r.classList.remove("on"); });
    row.classList.add("on");
  });
  document.addEventListener("input", function (e) {  // a weight's slider and number box show the same value
    var pair = e.target.getAttribute && e.target.getAttribute("data-pair");
    if (pair) { var other = document.getElementById(pair); if (other) other.value = e.target.value; }
  });
  document.addEventListener("htmx:afterRequest", function (e) {  // a save's new hash replaces the loaded one
    var h = e.detail.xhr && e.detail.xhr.getResponseHeader("X-Content-Hash");
    if (h) document.querySelectorAll("input[name=hash]").forEach(function (i) { i.value = h; });
  });
})();
