curl -X POST "https://yourdomain.com/api/v1/images" \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"prompt": "A majestic eagle soaring over mountains at sunset",
"aspect_ratio": "16:9",
"output_format": "webp"
}'
