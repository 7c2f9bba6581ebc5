// Swagger UI for /openapi.json, started from a file so that the page needs no inline script (CSP).
window.addEventListener('load', () => {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    layout: 'BaseLayout',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
