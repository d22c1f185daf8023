import requests
import json
API_KEY = "your_api_key_here"
BASE_URL = "https://yourdomain.com"
headers = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json"
}
# Generate an image
payload = {
    "prompt": "A cyberpunk city at night with neon lights",
    "aspect_ratio": "16:9",
    "num_images": 1
}
response = requests.post(
    f"{BASE_URL}/api/v1/images",
    headers=headers,
    json=payload
)
if response.status_code == 200:
    data = response.json()
    image_url = data["data"]["images"][0]["url"]
    print(f"Image generated: {image_url}")
else:
    print(f"Error: {response.json().get('error', 'Unknown error')}")
