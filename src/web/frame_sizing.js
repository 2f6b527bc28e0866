/* Inline in every framed box page: tells the page that frames it how tall
   the box is, so the --iframe snippet's listener sizes the frame. Posted on
   load and whenever the box changes size (an answer, an error, a rewrap),
   debounced, and only to an allowed site: the browser delivers a message
   only when its target origin is the framing page's own. */
(function () {
  "use strict";
  if (window.parent === window) return;
  var allowed = (document.documentElement.getAttribute("data-bulletin-parents") || "").split(" ").filter(Boolean);
  var ancestors = location.ancestorOrigins;
  // Where the browser names who frames us, only that site if allowed; elsewhere each allowed site.
  var targets = ancestors && ancestors.length
    ? allowed.filter(function (origin) { return origin === ancestors[0]; })
    : allowed;
  var posted = 0;
  var timer = 0;
  function post() {
    timer = 0;
    var height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height === posted) return;
    posted = height;
    targets.forEach(function (origin) {
      window.parent.postMessage({ bulletin: "frame-height", frame: window.name, height: height }, origin);
    });
  }
  function soon() {
    if (!timer) timer = setTimeout(post, 30);
  }
  if (window.ResizeObserver) new ResizeObserver(soon).observe(document.body);
  window.addEventListener("load", soon);
  soon();
})();
