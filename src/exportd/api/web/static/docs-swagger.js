// Starts Swagger UI on /docs from the settings in the page's data- attributes (no
// inline script, so the page's Content-Security-Policy needs no 'unsafe-inline').
"use strict";
(() => {
  const root = document.getElementById("swagger-ui");
  const settings = JSON.parse(root.dataset.settings);
  window.ui = window.SwaggerUIBundle({
    ...settings,
    url: root.dataset.openapiUrl,
    oauth2RedirectUrl: new URL(root.dataset.oauth2RedirectUrl, location.href).href,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
