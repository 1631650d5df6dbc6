/* Self-test page: drag and drop onto the drop zone, a list of the chosen files, limits checked before upload
   (the server checks them again while receiving), and a "checking" message while the page waits.
   Progressive enhancement: without JavaScript the plain file picker and form work the same. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("chosen");
  var problem = document.getElementById("client-error");
  var button = document.getElementById("check-button");
  var working = document.getElementById("working");
  if (!form || !input || !zone) { return; }
  var maxFiles = parseInt(input.getAttribute("data-max-files"), 10);
  var maxFile = parseInt(input.getAttribute("data-max-file-bytes"), 10);
  var maxTotal = parseInt(input.getAttribute("data-max-total-bytes"), 10);

  function size(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function check() {
    var files = input.files || [];
    var total = 0;
    var errors = [];
    while (list.firstChild) { list.removeChild(list.firstChild); }
    for (var i = 0; i < files.length; i++) {
      var li = document.createElement("li");
      li.textContent = files[i].name + " (" + size(files[i].size) + ")"; // textContent: a name is never HTML
      if (files[i].size > maxFile) {
        li.className = "too-big";
        errors.push(files[i].name + " is over " + size(maxFile));
      }
      total += files[i].size;
      list.appendChild(li);
    }
    if (files.length > maxFiles) { errors.push("choose at most " + maxFiles + " files"); }
    if (total > maxTotal) { errors.push("the files together are over " + size(maxTotal)); }
    problem.textContent = errors.length ? "Too much to upload: " + errors.join("; ") + "." : "";
    problem.hidden = !errors.length;
    return !errors.length;
  }

  input.addEventListener("change", check);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      check();
    }
  });
  form.addEventListener("submit", function (event) {
    if (!check()) {
      event.preventDefault();
      return;
    }
    button.disabled = true;
    working.hidden = false;
  });
}());
