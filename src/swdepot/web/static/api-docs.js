// Swagger UI on the service's own OpenAPI document (same origin, same Basic login).
window.ui = SwaggerUIBundle({
  url: "/api/openapi.yaml",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  validatorUrl: null,  // the public validator is not reachable, and must not be called
});
