(function () {
  var live = document.getElementById("live");
  var stamp = document.getElementById("refreshed");
  function tick() {
    fetch(live.getAttribute("data-src"), {cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (text) {
        live.innerHTML = text;
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.className = "mut";
      })
      .catch(function () { stamp.textContent = "daemon not answering"; stamp.className = "bad"; })
      .then(function () { setTimeout(tick, REFRESH_MS); });
  }
  if (live && live.getAttribute("data-src")) { setTimeout(tick, REFRESH_MS); }
  var form = document.getElementById("logs-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = document.getElementById("logs");
      var token = document.getElementById("token").value;
      fetch(form.getAttribute("data-src"), {headers: {Authorization: "Bearer " + token}})
        .then(function (r) {
          return r.text().then(function (t) {
            if (!r.ok) { try { t = JSON.parse(t).error; } catch (e) {} t = r.status + ": " + t; }
            out.textContent = t;
          });
        })
        .catch(function () { out.textContent = "daemon not answering"; });
    });
  }
})();
