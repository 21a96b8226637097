// Demo analytics tag: runs only once "analytics" is accepted.
window.ran = window.ran || {};
window.ran.analytics = true;
document.cookie = "ds_an_id=demo; path=/; max-age=3600";
