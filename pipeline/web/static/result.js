/* Result page: offer the embedded evidence map as a download, built in the browser from the page itself
   (the server has already deleted it). Without JavaScript the link stays hidden; the page still prints. */
(function () {
  "use strict";
  var link = document.getElementById("map-download");
  var frame = document.querySelector("iframe.map");
  if (!link || !frame || !window.Blob || !window.URL) { return; }
  var html = frame.getAttribute("srcdoc") || "";
  link.href = URL.createObjectURL(new Blob([html], { type: "text/html;charset=utf-8" }));
  link.hidden = false;
}());
